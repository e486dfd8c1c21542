"""`edgekit camera --preview`: the device's live view reached from this machine.

The camera script serves on the device's loopback only (`--serve 127.0.0.1:PORT`); for an SSH
device an `ssh -L` tunnel (the device's pinned host key, SSHTarget.forward) brings it to
127.0.0.1:LOCAL_PORT here. On this machine as the device the script serves LOCAL_PORT directly.
Nothing here prints: the URL and problems go to callbacks (the CLI prints them).
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from edgekit.devices.targets.base import Target
from edgekit.errors import DeviceError, UsageError


def check_local_port(port: int) -> None:
    """Fail before anything starts when 127.0.0.1:port cannot be listened on here."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"local port {port} is in use", hint="pick another with --preview-port (0 = any free port)"
                ) from None
            raise UsageError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Preview:
    """Serve argument for the script, and what to do when it says `serving: URL`."""

    def __init__(
        self,
        target: Target,
        local_port: int,
        on_url: Callable[[str], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.target = target
        self.tunnelled = target.spec.kind == "ssh"
        if target.spec.kind not in ("local", "ssh"):
            raise UsageError(f"--preview works with local and SSH devices; {target.name} is {target.spec.kind}")
        check_local_port(local_port)
        self.local_port = local_port or (_free_port() if self.tunnelled else 0)
        self.on_url = on_url
        self.on_error = on_error
        self.tunnel = None
        self.url: str | None = None

    def serve_arg(self) -> str:
        """The script's --serve: the device's loopback only (any free port there when tunnelled)."""
        return "127.0.0.1:0" if self.tunnelled else f"127.0.0.1:{self.local_port}"

    def on_serving(self, device_url: str) -> None:
        """Called with the script's `serving: URL` line (from a reader thread): never raises."""
        try:
            if self.tunnelled:
                remote_port = urlsplit(device_url).port
                if not remote_port:
                    raise DeviceError(f"the camera script announced an unusable address {device_url!r}")
                self.tunnel = self.target.forward(self.local_port, remote_port)
                self.url = f"http://127.0.0.1:{self.local_port}/"
            else:
                self.url = device_url
            self.on_url(self.url)
        except Exception as exc:  # the run goes on without a view; the user is told why
            self.on_error(f"live view not available: {exc}")

    def close(self) -> None:
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            with contextlib.suppress(Exception):
                tunnel.close()
