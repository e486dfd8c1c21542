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
            _Relay(self, client, upstream, self.cut_after).start()

    def close(self) -> None:
        self._srv.close()


class _Relay:
    """One relayed connection; cut (both sides closed) once the client has sent `limit` bytes."""

    def __init__(self, proxy: CuttingProxy, client, upstream, limit: int | None) -> None:
        self.proxy, self.client, self.upstream, self.limit = proxy, client, upstream, limit
        self.sent = 0

    def start(self) -> None:
        threading.Thread(target=self._pump, args=(self.client, self.upstream, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.upstream, self.client, False), daemon=True).start()

    def _close(self) -> None:
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _pump(self, src, dst, upstream: bool) -> None:
        try:
            while data := src.recv(65536):
                if upstream and self.limit is not None and self.sent + len(data) > self.limit:
                    self.proxy.cuts += 1
                    break
                self.sent += len(data) if upstream else 0
                dst.sendall(data)
        except OSError:
            pass
        self._close()
