"""Labels and preprocessing packed inside a `.tflite`, so a bare model still describes itself.

Written the way TFLite Support's MetadataPopulator does it, so LiteRT/MediaPipe tooling reads it:
  1. a `TFLITE_METADATA` entry in the model's metadata list: a `ModelMetadata` flatbuffer
     (metadata_schema.fbs, identifier "M001") with the input's ImageProperties (RGB) and
     NormalizationOptions (mean, std), and the output's label file as a TENSOR_AXIS_LABELS
     associated file;
  2. the associated files as a zip archive appended to the flatbuffer (interpreters ignore trailing
     bytes):
       labels.txt            one label per line
       edgekit_meta.json     {"schema_version", "preprocessing", "output_kind", "model", ...}
Reading needs only a zip reader (Python's zipfile, `unzip -l`), which is what the device scripts use.
"""

from __future__ import annotations

import io
import json
import zipfile

META_NAME = "edgekit_meta.json"
LABELS_NAME = "labels.txt"
TFLITE_METADATA = b"TFLITE_METADATA"
METADATA_PARSER_VERSION = "1.0.0"


def embed(tflite: bytes, *, labels: list[str] | None, meta: dict) -> bytes:
    """Return the model with standard metadata plus a zip of labels.txt + edgekit_meta.json."""
    flat = _with_standard_metadata(strip(tflite), labels=labels, meta=meta)
    buf = io.BytesIO()
    # Stored, not deflated: MediaPipe and the TFLite Support readers refuse compressed archives.
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        if labels:
            zf.writestr(_entry(LABELS_NAME), "\n".join(labels) + "\n")
        zf.writestr(_entry(META_NAME), json.dumps(meta, indent=1, sort_keys=True))
    return flat + buf.getvalue()


def _entry(name: str) -> zipfile.ZipInfo:
    # A fixed timestamp keeps the same model + labels byte-identical (same sha256, no re-deploy).
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
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


# --------------------------------------------------------------------------- TFLITE_METADATA

# Field slots of metadata_schema.fbs (declaration order; a union takes two slots: type, value).
_FILE_TYPE_UNKNOWN, _FILE_TYPE_TENSOR_AXIS_LABELS = 0, 2
_COLOR_RGB = 1
_CONTENT_FEATURE, _CONTENT_IMAGE = 1, 2
_PROCESS_NORMALIZATION = 1


def build_model_metadata(*, name: str, description: str, labels: bool, meta: dict) -> bytes:
    """A ModelMetadata flatbuffer ("M001") for a single-input image classifier."""
    import flatbuffers

    b = flatbuffers.Builder(1024)
    prep = meta.get("preprocessing", {})
    mean = [float(v) for v in prep.get("mean", [0.0, 0.0, 0.0])]
    std = [float(v) for v in prep.get("std", [1.0, 1.0, 1.0])]

    def string(s: str) -> int:
        return b.CreateString(s)

    def offsets(items: list[int]) -> int:
        b.StartVector(4, len(items), 4)
        for o in reversed(items):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    def floats(values: list[float]) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(v)
        return b.EndVector()

    def associated_file(fname: str, desc: str, ftype: int) -> int:
        n, d = string(fname), string(desc)
        b.StartObject(4)
        b.PrependUOffsetTRelativeSlot(0, n, 0)
        b.PrependUOffsetTRelativeSlot(1, d, 0)
        b.PrependInt8Slot(2, ftype, 0)
        return b.EndObject()

    def table(n_fields: int, fields: list[tuple[int, str, int]]) -> int:
        b.StartObject(n_fields)
        for slot, kind, value in fields:
            if kind == "offset":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "ubyte":
                b.PrependUint8Slot(slot, value, 0)
            elif kind == "byte":
                b.PrependInt8Slot(slot, value, 0)
        return b.EndObject()

    # input: image, RGB, normalisation (x - mean) / std, stats of the normalised range
    norm = table(2, [(0, "offset", floats(mean)), (1, "offset", floats(std))])
    unit = table(2, [(0, "ubyte", _PROCESS_NORMALIZATION), (1, "offset", norm)])
    image_props = table(2, [(0, "byte", _COLOR_RGB)])
    in_content = table(3, [(0, "ubyte", _CONTENT_IMAGE), (1, "offset", image_props)])
    lo = [(0.0 - m) / s for m, s in zip(mean, std, strict=True)]
    hi = [(255.0 - m) / s for m, s in zip(mean, std, strict=True)]
    in_stats = table(2, [(0, "offset", floats(hi)), (1, "offset", floats(lo))])
    in_name = string("image")
    in_desc = string(f"RGB image resized to {prep.get('size')} (bilinear), normalised (x - mean) / std")
    units = offsets([unit])
    input_md = table(
        7,
        [
            (0, "offset", in_name),
            (1, "offset", in_desc),
            (3, "offset", in_content),
            (4, "offset", units),
            (5, "offset", in_stats),
        ],
    )

    # output: class scores (logits unless the meta says otherwise), labels attached
    out_files = (
        offsets([associated_file(LABELS_NAME, "class labels, one per line", _FILE_TYPE_TENSOR_AXIS_LABELS)])
        if labels
        else None
    )
    feature = table(0, [])
    out_content = table(3, [(0, "ubyte", _CONTENT_FEATURE), (1, "offset", feature)])
    kind = meta.get("output_kind", "logits")
    out_name = string("logits" if kind == "logits" else "probability")
    out_desc = string(
        f"class scores ({kind}; apply softmax for probabilities)"
        if kind == "logits"
        else "class probabilities"
    )
    out_fields = [(0, "offset", out_name), (1, "offset", out_desc), (3, "offset", out_content)]
    if out_files is not None:
        out_fields.append((6, "offset", out_files))
    output_md = table(7, out_fields)

    sub = table(4, [(2, "offset", offsets([input_md])), (3, "offset", offsets([output_md]))])
    model_files = offsets(
        [associated_file(META_NAME, "edgekit metadata (preprocessing, model config)", _FILE_TYPE_UNKNOWN)]
    )
    fields = [
        (0, "offset", string(name)),
        (1, "offset", string(description)),
        (2, "offset", string(str(meta.get("schema_version", 1)))),
        (3, "offset", offsets([sub])),
        (4, "offset", string("edgekit")),
        (6, "offset", model_files),
        (7, "offset", string(METADATA_PARSER_VERSION)),
    ]
    root = table(8, fields)
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


def _with_standard_metadata(flat: bytes, *, labels: list[str] | None, meta: dict) -> bytes:
    """Add (or replace) the TFLITE_METADATA entry of a TFLite flatbuffer."""
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    md = build_model_metadata(
        name=str(meta.get("name", "model")),
        description=f"image classifier ({meta.get('precision', '')}) exported by edgekit",
        labels=bool(labels),
        meta=meta,
    )
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    existing = [m for m in (model.metadata or []) if m.name == TFLITE_METADATA]
    if existing:  # replace in place, so embedding twice gives the same bytes
        model.buffers[existing[0].buffer].data = np.frombuffer(md, dtype=np.uint8)
    else:
        buf = schema.BufferT()
        buf.data = np.frombuffer(md, dtype=np.uint8)
        model.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name = TFLITE_METADATA
        entry.buffer = len(model.buffers) - 1
        model.metadata = [*(model.metadata or []), entry]
    return flatbuffer_utils.convert_object_to_bytearray(model)


def read_standard_metadata(data: bytes) -> bytes | None:
    """The raw ModelMetadata flatbuffer of a model, or None."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(strip(data)))
    for m in model.metadata or []:
        if m.name == TFLITE_METADATA:
            return bytes(model.buffers[m.buffer].data)
    return None
