"""`edgekit convert model.onnx`: an ONNX classifier in, the same verified bundle out.

Load + check the ONNX file, pick a back end (converters/onnx_tflite.py), convert to each precision,
verify every result against ONNX Runtime on the same images (edgekit.pipeline.onnx_verify), and write
the same bundle as `edgekit export` (edgekit.bundle.writer), so deploy/profile/eval/report take it
unchanged. ONNX out (`export --format onnx`) is edgekit.pipeline.onnx_export.
"""

from __future__ import annotations

import datetime as _dt
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.bundle.manifest import LABELS, SCHEMA_VERSION, default_labels
from edgekit.config import PRECISIONS, Preprocessing
from edgekit.data.datasets import ImageBatch, load_calibration
from edgekit.errors import (
    DependencyError,
    ModelFileError,
    UsageError,
    VerificationError,
    require_tensorflow,
)
from edgekit.pipeline.onnx_verify import INT8_MIN_AGREEMENT, verify_against_onnx

Progress = Callable[[str], None]

ONNX_FILE = "source.onnx"


@dataclass(frozen=True)
class ConvertConfig:
    onnx: str
    precisions: tuple[str, ...] = ("int8",)
    io: str = "int8"
    backend: str = "auto"
    calibration: str | None = None
    calibration_samples: int = 100
    labels: tuple[str, ...] = field(default_factory=tuple)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    name: str | None = None
    output: str | None = None
    min_agreement: float = INT8_MIN_AGREEMENT

    def __post_init__(self) -> None:
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise UsageError(f"--quantize must be among {', '.join(PRECISIONS)}; received {self.precisions}")
        from edgekit.converters.onnx_tflite import BACKENDS

        if self.backend not in BACKENDS:
            raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}; received {self.backend!r}")
        for flag, v in (("--mean", self.mean), ("--std", self.std)):
            if v is not None and len(v) not in (1, 3):
                raise UsageError(f"{flag} takes 1 or 3 numbers; received {len(v)}")
        if self.std is not None and any(s == 0 for s in self.std):
            raise UsageError("--std must not contain 0")


def onnx_call(fn, *args, **kwargs):
    """Call an ONNX helper, turning its errors into edgekit's (one line + exit code)."""
    from edgekit.converters.onnx_check import MissingOnnxPackage, OnnxModelError

    try:
        return fn(*args, **kwargs)
    except MissingOnnxPackage as exc:
        raise DependencyError(str(exc), hint="pip install 'edgekit[onnx]'") from None
    except OnnxModelError as exc:
        raise ModelFileError(str(exc)) from None


def convert_bundle(cfg: ConvertConfig, progress: Progress = lambda _m: None) -> tuple[Path, dict]:
    """The whole ONNX import; returns (bundle folder, manifest)."""
    from edgekit.converters import onnx_check, onnx_keras

    progress("loading ONNX model")
    model = onnx_call(onnx_check.load, cfg.onnx)
    inputs = onnx_check.graph_inputs(model)
    if len(inputs) != 1:
        raise ModelFileError(f"{cfg.onnx} has {len(inputs)} inputs; an image classifier has exactly one")
    shape = onnx_check.static_shape(inputs[0])
    layout, (h, w, c) = image_layout(shape, onnx_keras.input_layout(model), cfg.onnx)
    backend = _pick_backend(cfg.backend, model)  # before the slow steps: a refusal comes at once
    name = cfg.name or _safe_name(Path(cfg.onnx).stem)
    out = Path(cfg.output) if cfg.output else Path("edgekit-out") / name
    prep = Preprocessing(
        size=(h, w),
        mean=_three(cfg.mean, 127.5),
        std=_three(cfg.std, 127.5),
    ).to_dict()
    progress("loading calibration data")
    calib = load_calibration(cfg.calibration, prep, cfg.calibration_samples)
    if calib.x.shape[-1] != c:
        raise ModelFileError(f"{cfg.onnx} expects {c} input channels; edgekit feeds RGB images (3)")
    onnx_x = calib.x.transpose(0, 3, 1, 2) if layout == "NCHW" else calib.x
    progress("running ONNX Runtime (reference)")
    sess = onnx_call(onnx_check.session, model)
    ref = onnx_call(onnx_check.run, sess, onnx_x)
    classes = int(ref[0].shape[-1])
    labels = cfg.labels or default_labels(classes)
    if len(labels) != classes:
        raise UsageError(f"--labels has {len(labels)} labels but the model outputs {classes} classes")

    require_tensorflow()
    precisions = _float32_first(cfg.precisions)
    t0 = time.perf_counter()
    converted = _run_backend(backend, model, precisions, cfg, calib, inputs[0].name, name, progress)
    convert_s = time.perf_counter() - t0

    from edgekit.converters import tflite_metadata

    meta = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "model": _model_block(model, converted, h, w, classes),
        "preprocessing": prep,
        "output_kind": "logits",
        "num_classes": classes,
    }
    entries = []
    for p in precisions:
        if p not in cfg.precisions:
            continue
        flat = converted.tflite[p]
        data = tflite_metadata.embed(flat, labels=list(labels), meta={**meta, "precision": p})
        progress(f"verifying {p} against ONNX Runtime")
        ver = verify_against_onnx(ref, data, calib, p, cfg.min_agreement)
        ver["size_ratio_vs_float32"] = round(len(flat) / len(converted.tflite["float32"]), 4)
        ver["convert_s"] = round(convert_s, 2)
        from edgekit.bundle.writer import io_details

        entries.append(
            {
                "file": f"{name}_{p}.tflite",
                "precision": p,
                "io": io_details(data),
                "size_bytes": len(data),
                "flatbuffer_bytes": len(flat),
                "verification": ver,
                "_data": data,
            }
        )
    manifest = _manifest(cfg, name, meta, labels, calib, entries, converted, model)
    progress("writing bundle")
    from edgekit.bundle.writer import write_bundle

    write_bundle(
        out, manifest, entries, converted.keras_model, labels, {ONNX_FILE: Path(cfg.onnx).read_bytes()}
    )
    return out, manifest


def image_layout(shape: list, layout: str, path: str) -> tuple[str, tuple[int, int, int]]:
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise ModelFileError(
            f"{path} has input shape {shape}; expected a fixed-size image batch [N, C, H, W] or [N, H, W, C]",
            hint="export the ONNX with a fixed image size",
        )
    if layout == "NCHW":
        return "NCHW", (shape[2], shape[3], shape[1])
    return "NHWC", (shape[1], shape[2], shape[3])


def _three(v, default: float) -> tuple[float, float, float]:
    if v is None:
        return (default,) * 3
    return tuple(float(x) for x in (v * 3 if len(v) == 1 else v))


def _safe_name(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_").lower() or "onnx_model"


def _float32_first(precisions) -> list[str]:
    return ["float32", *[p for p in precisions if p != "float32"]]


def _pick_backend(requested: str, model) -> str:
    from edgekit.converters import onnx_keras, onnx_onnx2tf, onnx_onnxtf

    if requested == "onnx-tf":
        st = onnx_onnxtf.status()
        if not st["available"]:
            raise DependencyError(
                f"back end onnx-tf cannot run here: {st['reason']}", hint="use --backend edgekit"
            )
        return requested
    if requested == "onnx2tf":
        st = onnx_onnx2tf.status()
        if not st["available"]:
            raise DependencyError(st["reason"])
        return requested
    if requested == "edgekit":
        return requested
    # auto: edgekit's own importer when it knows every operator, else onnx2tf when installed.
    bad = onnx_keras.unsupported_ops(model)
    if not bad:
        return "edgekit"
    if onnx_onnx2tf.status()["available"]:
        return "onnx2tf"
    raise ModelFileError(
        f"operators not supported by edgekit's ONNX importer: {', '.join(bad)}",
        hint="install the onnx2tf back end: edgekit convert --install-backend onnx2tf",
    )


def _run_backend(
    backend, model, precisions, cfg: ConvertConfig, calib: ImageBatch, input_name, name, progress
):
    from edgekit.converters import keras_tflite, onnx_keras, onnx_onnx2tf, onnx_tflite

    def rep():
        for i in range(calib.x.shape[0]):
            yield calib.x[i : i + 1]

    try:
        if backend == "edgekit":
            return onnx_tflite.convert_edgekit(
                model, precisions, name=name, representative=rep, io_type=cfg.io, progress=progress
            )
        if backend == "onnx2tf":
            progress("converting with onnx2tf (isolated environment)")
            flats = onnx_onnx2tf.convert(
                cfg.onnx, precisions, calibration=calib.x, input_name=input_name, io_type=cfg.io
            )
            return onnx_tflite.Converted("onnx2tf", flats, None, {"onnx2tf_version": onnx_onnx2tf.VERSION})
        return _run_onnxtf(cfg, precisions, rep, progress)
    except onnx_keras.UnsupportedOnnxError as exc:
        raise ModelFileError(str(exc), hint="try --backend onnx2tf") from None
    except keras_tflite.ConversionError as exc:
        raise VerificationError(str(exc), hint="run with EDGEKIT_DEBUG=1 for the converter log") from exc
    except (RuntimeError, FileNotFoundError) as exc:
        raise VerificationError(f"{backend} back end failed: {exc}") from None


def _run_onnxtf(cfg: ConvertConfig, precisions, rep, progress):
    from edgekit.converters import keras_tflite, onnx_onnxtf, onnx_tflite

    progress("converting with onnx-tf")
    with tempfile.TemporaryDirectory(prefix="edgekit-onnxtf-") as tmp:
        onnx_onnxtf.convert_to_saved_model(cfg.onnx, tmp)
        flats = {
            p: keras_tflite.convert_saved_model(
                tmp, p, representative=rep if p == "int8" else None, io_type=cfg.io
            )
            for p in precisions
        }
    return onnx_tflite.Converted("onnx-tf", flats)


# --------------------------------------------------------------------------- verification


# --------------------------------------------------------------------------- manifest


def _model_block(model, converted, h: int, w: int, classes: int) -> dict:
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    block = {
        "family": "onnx",
        "classes": classes,
        "resolution": h,
        "alpha": None,
        "shortcut": None,
        "params": params,
        "macs": None,
        "input_shape": [1, h, w, 3],
    }
    if converted.keras_model is not None:
        from edgekit.models.counting import count_macs

        try:
            block["macs"] = count_macs(converted.keras_model)
        except Exception:
            block["macs"] = None
    return block


def _manifest(cfg, name, meta, labels, calib, entries, converted, model) -> dict:
    import tensorflow as tf

    from edgekit.bundle.writer import FLOAT_MODEL, calibration_record, host_record, versions
    from edgekit.converters import onnx_check

    versions = versions(tf)
    for dist in ("onnx", "onnxruntime"):
        versions[dist] = dist_version(dist)
    if converted.backend == "onnx2tf":
        versions["onnx2tf"] = converted.notes.get("onnx2tf_version")
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": meta["model"],
        "labels_file": LABELS,
        "num_classes": len(labels),
        "preprocessing": meta["preprocessing"],
        "output_kind": "logits",
        "source": {
            "weights": str(cfg.onnx),
            "format": "onnx",
            "onnx_file": ONNX_FILE,
            "opset": onnx_check.opset(model),
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "backend": converted.backend,
            **converted.notes,
        },
        "calibration": calibration_record(calib),
        "models": [{k: v for k, v in e.items() if k != "_data"} for e in entries],
        "float_model": FLOAT_MODEL if converted.keras_model is not None else None,
        "versions": versions,
        "host": host_record(),
    }


def dist_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- ONNX out


def install_backend(name: str, progress: Progress = lambda _m: None) -> dict:
    """Create an isolated back-end environment (explicit `--install-backend`)."""
    from edgekit.converters import onnx_onnx2tf

    if name != "onnx2tf":
        raise UsageError(f"--install-backend supports onnx2tf only; received {name!r}")
    try:
        path = onnx_onnx2tf.install(progress)
    except RuntimeError as exc:
        raise DependencyError(str(exc), hint="check network access to the package index") from None
    return {"backend": name, "path": str(path), "version": onnx_onnx2tf.VERSION}
