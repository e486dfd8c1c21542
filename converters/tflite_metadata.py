"""Labels and preprocessing packed inside a `.tflite`, so a bare model still describes itself.

The TFLite Support convention: associated files travel as a zip archive appended to the flatbuffer.
Flatbuffers ignore trailing bytes, so every interpreter loads the model unchanged, and anything with a
zip reader (Python's zipfile, the TFLite Support metadata displayer, `unzip -l`) can read it:
  labels.txt            one label per line
  edgekit_meta.json     {"schema_version", "preprocessing", "output_kind", "model", ...}
This module is pure standard library so the device scripts can mirror it without edgekit.
"""

from __future__ import annotations

import io
import json
import zipfile

META_NAME = "edgekit_meta.json"
LABELS_NAME = "labels.txt"


def embed(tflite: bytes, *, labels: list[str] | None, meta: dict) -> bytes:
    """Return the flatbuffer followed by a zip of labels.txt + edgekit_meta.json."""
    flat = strip(tflite)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if labels:
            zf.writestr(_entry(LABELS_NAME), "\n".join(labels) + "\n")
        zf.writestr(_entry(META_NAME), json.dumps(meta, indent=1, sort_keys=True))
    return flat + buf.getvalue()


def _entry(name: str) -> zipfile.ZipInfo:
    # A fixed timestamp keeps the same model + labels byte-identical (same sha256, no re-deploy).
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def read(data: bytes) -> tuple[list[str] | None, dict | None]:
    """(labels, meta) embedded in a `.tflite`, or (None, None) when it carries none."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
            labels = None
            if LABELS_NAME in names:
                labels = [ln for ln in zf.read(LABELS_NAME).decode("utf-8").splitlines() if ln.strip()]
            meta = json.loads(zf.read(META_NAME)) if META_NAME in names else None
            return labels, meta
    except (zipfile.BadZipFile, ValueError, KeyError, OSError):
        return None, None


def strip(data: bytes) -> bytes:
    """The flatbuffer without an appended archive (idempotent)."""
    end = zip_start(data)
    return data if end is None else data[:end]


def zip_start(data: bytes) -> int | None:
    """Offset where an appended zip archive starts, or None."""
    eocd = data.rfind(b"PK\x05\x06")
    if eocd < 0 or len(data) - eocd < 22:
        return None
    cd_size = int.from_bytes(data[eocd + 12 : eocd + 16], "little")
    cd_offset = int.from_bytes(data[eocd + 16 : eocd + 20], "little")
    # The archive was written standalone, so its offsets are relative to its own start.
    start = eocd - cd_size - cd_offset
    if start <= 0 or data[start : start + 4] != b"PK\x03\x04":
        return None
    return start
