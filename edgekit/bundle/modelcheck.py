"""Check a `.tflite` before anything in this process trusts it.

Two steps: a structural flatbuffer check in Python (cheap, no native code), then, for a doubtful
model (not from a bundle whose checksums match), a probe in a subprocess that loads it, checks it
is an image classifier and invokes it once. A model that crashes the interpreter (SIGSEGV in C++)
then kills only that subprocess, never the CLI.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from edgekit.errors import DependencyError, InputDataError, ModelFileError

PROBE_TIMEOUT_S = 120.0


def scripts_dir() -> Path:
    """The device scripts folder (installed as edgekit.device_scripts)."""
    import edgekit.device_scripts  # noqa: PLC0415

    return Path(edgekit.device_scripts.__file__).resolve().parent


def check_structure(path: str | Path) -> bytes:
    """The file's bytes when it looks like a TFLite flatbuffer; ModelFileError with one line if not."""
    from edgekit.converters.tflite_file import NotTFLiteError, check_file  # noqa: PLC0415

    try:
        return check_file(path)
    except NotTFLiteError as exc:
        raise ModelFileError(str(exc), hint="pass a .tflite file or an edgekit bundle folder") from None


def probe(path: str | Path, *, python: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> dict:
    """Load and invoke the model once in a subprocess; its description (io, runtime) or a clear error."""
    argv = [python or sys.executable, str(scripts_dir() / "edgelib.py"), "probe", str(path)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ModelFileError(f"{path}: loading and invoking it took over {timeout:.0f} s") from None
    if proc.returncode < 0:
        name = _signal_name(-proc.returncode)
        raise ModelFileError(
            f"{path} crashed the TFLite interpreter ({name}) while loading or running it",
            hint="the file is corrupt or made for another runtime; re-export it",
        )
    message = _error_line(proc.stderr) or f"the model check exited with code {proc.returncode}"
    if proc.returncode == 8:
        raise DependencyError(message)
    if proc.returncode == 3:
        raise InputDataError(message)
    if proc.returncode != 0:
        raise ModelFileError(message)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ModelFileError(f"{path}: the model check printed no result")


def check_model(path: str | Path, *, trusted: bool = False) -> dict | None:
    """Structural check always; the subprocess probe unless the model is trusted (checksums verified)."""
    check_structure(path)
    return None if trusted else probe(path)


def _error_line(stderr: str) -> str | None:
    for line in reversed(stderr.splitlines()):
        if line.startswith("error: "):
            return line[len("error: ") :].strip()
    return None


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"
