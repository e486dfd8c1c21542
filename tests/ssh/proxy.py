"""A TCP relay that can cut the connection after N client bytes: a network dropping mid-transfer."""

from __future__ import annotations

import socket
import threading


class CuttingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut_after: int | None = None  # client->server bytes per connection; None = never
        self.cuts = 0
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port = self._srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            limit = self.cut_after
            state = {"sent": 0}

            def close_both() -> None:
                for s in (client, upstream):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()

            def pump(src, dst, count: bool) -> None:
                try:
                    while data := src.recv(65536):
                        if count and limit is not None and state["sent"] + len(data) > limit:
                            self.cuts += 1
                            close_both()
                            return
                        state["sent"] += len(data) if count else 0
                        dst.sendall(data)
                except OSError:
                    pass
                close_both()

            threading.Thread(target=pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, False), daemon=True).start()

    def close(self) -> None:
        self._srv.close()
