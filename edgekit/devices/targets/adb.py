"""Android over adb: move files to a phone and run commands there (benchmark_model: edgekit.devices.benchmark_model).

What a phone needs (see the README's Android section):
  * USB debugging on, this computer authorised (`adb devices` lists the serial as "device");
  * for profiling: the `benchmark_model` binary for the phone's ABI (arm64-v8a for nearly every
    phone since 2017), pushed once: `adb push benchmark_model /data/local/tmp/ && adb shell chmod +x
    /data/local/tmp/benchmark_model`, and its path in the device entry (`--benchmark-model`);
  * for eval/camera (the Python device scripts) on a phone: Termux. adb's shell user cannot run
    Termux's Python, so register the phone as an SSH device instead: in Termux `pkg install
    openssh python python-numpy`, `sshd` (port 8022), then `edgekit devices add phone --ssh
    USER@PHONE_IP:8022` and `edgekit devices setup phone` (see the README).

The adb binary: the device entry's `adb` option, else `adb` on PATH, else the one bundled with the
`adbutils` package. Not tested against a phone here: the tests cover command construction and the
parsing of recorded real `benchmark_model` output.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from edgekit.devices.targets.base import CommandResult, Target
from edgekit.errors import DependencyError, DeviceError

DEFAULT_WORKDIR = "/data/local/tmp/edgekit"  # writable by the shell user without root


def find_adb(configured: str | None = None) -> str:
    if configured:
        if not Path(configured).expanduser().is_file():
            raise DependencyError(f"adb binary {configured} (from the device entry) does not exist")
        return str(Path(configured).expanduser())
    found = shutil.which("adb")
    if found:
        return found
    try:
        import adbutils

        return adbutils.adb_path()
    except Exception:
        raise DependencyError(
            "no adb binary found",
            hint="install Android platform-tools (apt install adb) or pip install adbutils",
        ) from None


class ADBTarget(Target):
    """An Android device addressed by its adb serial."""

    def adb_argv(self, *args: str) -> list[str]:
        return [find_adb(self.spec.options.get("adb")), "-s", self.spec.address, *args]

    def shell_argv(self, argv: list[str]) -> list[str]:
        """`adb shell` joins its arguments into one line for the phone's sh, so quote exactly once."""
        return self.adb_argv("shell", shlex.join(argv))

    def _call(self, argv: list[str], *, timeout: float | None, stream: Callable[[str], None] | None = None):
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise DeviceError(f"cannot start adb for {self.name}: {exc}") from None
        err: list[str] = []

        def read_err():
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace")
                err.append(line)
                if stream:
                    stream(line.rstrip("\n"))

        t = threading.Thread(target=read_err, daemon=True)
        t.start()
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise DeviceError(f"adb command on {self.name} did not finish within {timeout:g} s") from None
        t.join(timeout=5)
        stderr = "".join(err)
        if proc.returncode != 0 and re.search(
            r"device '.*' not found|no devices/emulators|unauthorized|offline", stderr
        ):
            raise DeviceError(
                f"android device {self.spec.address!r} ({self.name}) is not available: {stderr.strip()}",
                hint="check `adb devices`: the phone must be listed as 'device' (USB debugging authorised)",
            )
        return CommandResult(proc.returncode, out.decode("utf-8", "replace"), stderr)

    def run(self, argv: list[str], *, timeout: float | None = None, stream=None) -> CommandResult:
        return self._call(self.shell_argv(argv), timeout=timeout, stream=stream)

    def push(self, local_path: str, remote_path: str) -> None:
        res = self._call(self.adb_argv("push", str(local_path), remote_path), timeout=600)
        if res.returncode != 0:
            raise DeviceError(f"adb push to {self.name}:{remote_path} failed: {res.stderr.strip()}")

    def pull(self, remote_path: str, local_path: str) -> None:
        res = self._call(self.adb_argv("pull", remote_path, str(local_path)), timeout=600)
        if res.returncode != 0:
            raise DeviceError(f"adb pull of {self.name}:{remote_path} failed: {res.stderr.strip()}")

    def exists(self, remote_path: str) -> bool:
        return self.run(["test", "-e", remote_path], timeout=60).returncode == 0


# --------------------------------------------------------------------------- benchmark_model
