"""Cheap structural checks on a `.tflite` before an interpreter (native code) ever sees it.

A truncated or corrupt flatbuffer can crash the interpreter in C++ (a segfault takes the whole CLI
down), so files are checked here first and anything doubtful is loaded in a subprocess. The rules
live in the device scripts' edgelib (devices run the same check without edgekit); this module gives
them the desktop's exception type.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.device_scripts import edgelib


class NotTFLiteError(ValueError):
    pass


def check_bytes(data: bytes, name: str = "model") -> None:
    """Raise NotTFLiteError with a one-line reason when `data` cannot be a TFLite flatbuffer."""
    try:
        edgelib.check_tflite_bytes(data, name)
    except edgelib.ModelFailure as exc:
        raise NotTFLiteError(str(exc)) from None


def check_file(path: str | Path) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise NotTFLiteError(f"{p} does not exist or is not a file")
    data = p.read_bytes()
    check_bytes(data, str(p))
    return data
