"""This machine as a device: files are copied (or used where they are), commands run in a subprocess.

The device scripts run here exactly as on a Raspberry Pi: a separate interpreter process, arguments
as an argv list, the JSON result on stdout and progress on stderr.
"""

from __future__ import annotations

import os
import platform
import selectors
import shutil
import signal
import subprocess
import time
from pathlib import Path

from edgekit.devices.targets.base import CommandResult, Target
from edgekit.devices.targets.lifetime import die_with_parent
from edgekit.errors import DeviceError

INTERRUPT_GRACE_S = 10.0  # after Ctrl-C a script gets this long to write its summary


def _expand(path: str) -> Path:
    return Path(os.path.expanduser(path)).resolve()


class LocalTarget(Target):
    """Runs device scripts on this machine with `spec.python` (the desktop's own Python by default)."""

    def push(self, local_path: str, remote_path: str) -> None:
        _copy(_expand(local_path), _expand(remote_path))

    def pull(self, remote_path: str, local_path: str) -> None:
        _copy(_expand(remote_path), _expand(local_path))

    def exists(self, remote_path: str) -> bool:
        return _expand(remote_path).exists()

    def describe(self) -> dict:
        return {**super().describe(), "hostname": platform.node(), "python": self.spec.python}

    def run(self, argv: list[str], *, timeout: float | None = None, stream=None) -> CommandResult:
        """Run argv; stderr lines go to `stream` as they arrive. Ctrl-C is passed on to the command
        (SIGINT), which gets INTERRUPT_GRACE_S to finish cleanly; its result is returned as usual."""
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                preexec_fn=die_with_parent(own_group=True),  # no orphan after a kill -9 of edgekit
            )  # fmt: skip
        except OSError as exc:
            raise DeviceError(f"cannot start {argv[0]!r} on {self.name}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + timeout if timeout else None
        out, err = bytearray(), bytearray()
        pending = bytearray()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        interrupted_at = None
        try:
            while sel.get_map():
                try:
                    wait = 0.2
                    if deadline is not None and time.monotonic() > deadline:
                        _stop(proc)
                        raise DeviceError(
                            f"{Path(argv[1]).name if len(argv) > 1 else argv[0]} on {self.name} timed out "
                            f"after {timeout:.0f} s and was stopped"
                        )
                    if interrupted_at is not None and time.monotonic() - interrupted_at > INTERRUPT_GRACE_S:
                        _stop(proc)
                    for key, _ in sel.select(wait):
                        chunk = os.read(key.fd, 65536)
                        if not chunk:
                            sel.unregister(key.fileobj)
                            continue
                        key.data.extend(chunk)
                        if key.data is err and stream is not None:
                            pending.extend(chunk)
                            *lines, rest = pending.split(b"\n")
                            pending[:] = rest
                            for line in lines:
                                stream(line.decode("utf-8", "replace").rstrip("\r"))
                except KeyboardInterrupt:
                    if interrupted_at is not None:  # a second Ctrl-C: stop at once
                        _stop(proc, grace=0)
                        raise
                    interrupted_at = time.monotonic()
                    _signal(proc, signal.SIGINT)
            rc = proc.wait()
        finally:
            sel.close()
            if proc.poll() is None:
                _stop(proc)
            proc.stdout.close()
            proc.stderr.close()
        if pending and stream is not None:
            stream(pending.decode("utf-8", "replace"))
        return CommandResult(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    if grace > 0:
        _signal(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own group: whatever it started goes too
    except OSError:
        proc.kill()
    proc.wait()


def _copy(src: Path, dst: Path) -> None:
    if src == dst:
        return
    if not src.exists():
        raise DeviceError(f"{src} does not exist")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)
