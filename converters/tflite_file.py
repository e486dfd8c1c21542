"""Cheap structural checks on a `.tflite` before an interpreter (native code) ever sees it.

A truncated or corrupt flatbuffer can crash the interpreter in C++ (a segfault takes the whole CLI
down), so files are checked here first and anything doubtful is loaded in a subprocess.
"""

from __future__ import annotations

from pathlib import Path

TFLITE_IDENTIFIER = b"TFL3"


class NotTFLiteError(ValueError):
    pass


def check_bytes(data: bytes, name: str = "model") -> None:
    """Raise NotTFLiteError with a one-line reason when `data` cannot be a TFLite flatbuffer."""
    if len(data) < 16:
        raise NotTFLiteError(f"{name} is {len(data)} bytes: too small to be a TFLite model (truncated?)")
    if data[4:8] != TFLITE_IDENTIFIER:
        raise NotTFLiteError(
            f"{name} is not a TFLite flatbuffer (identifier {data[4:8]!r}, expected {TFLITE_IDENTIFIER!r})"
        )
    root = int.from_bytes(data[0:4], "little")
    if root < 8 or root + 4 > len(data):
        raise NotTFLiteError(
            f"{name} has a root offset {root} outside its {len(data)} bytes: truncated or corrupt"
        )
    vtable = root - int.from_bytes(data[root : root + 4], "little", signed=True)
    if vtable < 0 or vtable + 4 > len(data):
        raise NotTFLiteError(f"{name} has a corrupt flatbuffer table: truncated or corrupt")


def check_file(path: str | Path) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise NotTFLiteError(f"{p} does not exist or is not a file")
    data = p.read_bytes()
    check_bytes(data, str(p))
    return data
