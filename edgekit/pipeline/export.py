"""`edgekit export`: build or load a model, calibrate, convert, verify, and write a bundle.

Orchestration only: architectures come from edgekit.models, converter settings from
edgekit.pipeline.quantize presets, file formats from edgekit.converters, the manifest from edgekit.bundle.manifest.
The bundle is written into a temporary folder beside the target and renamed into place, so an
interrupted export never leaves half a bundle (and an existing bundle survives a failed one).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit import __version__
from edgekit.bundle.manifest import LABELS, MANIFEST, SCHEMA_VERSION, file_entries, write_json_atomic
from edgekit.config import ExportConfig, ModelConfig, Preprocessing, QuantizeConfig
from edgekit.data import ImageBatch, load_calibration
from edgekit.device_scripts import edgelib
from edgekit.errors import ModelFileError, VerificationError, require_tensorflow
from edgekit.models import build_model, variant_name
from edgekit.models.batchnorm import recalibrate_batchnorm
from edgekit.models.counting import count_macs, count_params

FLOAT_MODEL = "float_model.keras"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class SourceModel:
    """What export starts from: a Keras model plus what it needs to describe itself."""

    keras_model: object
    config: ModelConfig
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    origin: str  # "random" or the weights path
    extra: dict  # anything the source knows (training history summary, data source, ...)
    calibration: ImageBatch | None = None  # the source's own calibration images (a run's training sample)
    eval_data: ImageBatch | None = None  # labelled held-out images for float vs int8 accuracy


def default_labels(classes: int) -> tuple[str, ...]:
    return tuple(f"class_{i}" for i in range(classes))


def build_source(cfg: ExportConfig) -> SourceModel:
    """Build a fresh model (random weights) or load `--weights`."""
    require_tensorflow()
    if cfg.weights:
        from edgekit.pipeline.weights import load_weights  # noqa: PLC0415

        return load_weights(cfg)
    labels = cfg.labels or default_labels(cfg.model.classes)
    prep = cfg.preprocessing or Preprocessing(size=(cfg.model.resolution, cfg.model.resolution))
    return SourceModel(build_model(cfg.model), cfg.model, tuple(labels), prep, "random", {})


def export_bundle(
    cfg: ExportConfig,
    progress: Progress = lambda _msg: None,
    *,
    max_drop: float | None = None,
    extras: Callable | None = None,
) -> tuple[Path, dict]:
    """Run the whole export; returns (bundle folder, manifest). `max_drop`: see edgekit.pipeline.quantize."""
    tf = require_tensorflow()
    from edgekit.converters import keras_tflite, tflite_metadata  # noqa: PLC0415

    progress("building model")
    src = build_source(cfg)
    model = src.keras_model
    prep = src.preprocessing.to_dict()
    name = variant_name(src.config)
    out = Path(cfg.output) if cfg.output else Path("edgekit-out") / name

    progress("loading calibration data")
    if cfg.calibration is None and src.calibration is not None:
        calib = src.calibration
    else:
        calib = load_calibration(cfg.calibration, prep, cfg.calibration_samples)
    if src.origin == "random":
        # Random weights with default BN statistics shrink activations to ~1e-18 after 14 layers, which
        # makes latency fine but verification meaningless: give BN the statistics of the inputs.
        recalibrate_batchnorm(model, calib.x)
    float_out = _keras_predict(model, calib.x)
    from edgekit.pipeline import quantize as qz  # noqa: PLC0415

    acc_data = qz.labelled_eval_data(src.eval_data, calib, src.labels)
    acc_float = _keras_predict(model, acc_data[0]) if acc_data else None

    meta = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "model": src.config.to_dict(),
        "preprocessing": prep,
        "output_kind": "logits",
        "num_classes": len(src.labels),
    }
    entries = []
    sizes: dict[str, int] = {}
    with keras_tflite.saved_model(model) as saved:
        for precision in _with_float32_first(cfg.precisions):
            progress(f"converting to {precision}")
            q = QuantizeConfig.preset(precision, io=cfg.io)
            t0 = time.perf_counter()
            try:
                flat = keras_tflite.convert_saved_model(
                    saved,
                    q.precision,
                    representative=_representative(calib.x) if q.precision == "int8" else None,
                    io_type=q.io,
                    per_channel=q.per_channel,
                )
            except keras_tflite.ConversionError as exc:
                raise VerificationError(
                    str(exc), hint="run with EDGEKIT_DEBUG=1 for the converter log"
                ) from exc
            convert_s = time.perf_counter() - t0
            sizes[precision] = len(flat)
            if precision not in cfg.precisions:
                continue  # float32 converted only to measure the size ratio
            accuracy = None
            if precision == "int8" and (acc_data or max_drop is not None):
                progress("measuring float vs int8 accuracy")
                flat, accuracy = qz.export_accuracy(
                    saved,
                    flat,
                    calib=calib.x,
                    data=acc_data,
                    float_out=acc_float,
                    max_drop=max_drop,
                    per_channel=q.per_channel,
                    progress=progress,
                )
            data = tflite_metadata.embed(flat, labels=list(src.labels), meta={**meta, "precision": precision})
            progress(f"verifying {precision}")
            verification = verify(float_out, data, calib)
            verification["size_ratio_vs_float32"] = round(len(flat) / sizes["float32"], 4)
            verification["convert_s"] = round(convert_s, 2)
            entries.append(
                {
                    "file": f"{name}_{precision}.tflite",
                    "precision": precision,
                    "io": _io_details(data),
                    "size_bytes": len(data),
                    "flatbuffer_bytes": len(flat),
                    "verification": verification,
                    **({"accuracy": accuracy} if accuracy else {}),
                    "_data": data,
                }
            )

    manifest = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            **src.config.to_dict(),
            "params": count_params(model),
            "macs": count_macs(model),
            "input_shape": [1, src.config.resolution, src.config.resolution, 3],
        },
        "labels_file": LABELS,
        "num_classes": len(src.labels),
        "preprocessing": prep,
        "output_kind": "logits",
        "source": {"weights": src.origin, **src.extra},
        "calibration": calibration_record(calib),
        "models": [{k: v for k, v in e.items() if k != "_data"} for e in entries],
        "float_model": FLOAT_MODEL,
        "versions": _versions(tf),
        "host": host_record(),
    }
    extra_files = {}
    if extras is not None:  # e.g. ONNX models for `export --format onnx` (edgekit.pipeline.onnx.onnx_extras)
        add, extra_files = extras(model, calib, name, progress)
        manifest.update(add)
    progress("writing bundle")
    _write_bundle(out, manifest, entries, model, src.labels, extra_files)
    return out, manifest


def calibration_record(calib: ImageBatch) -> dict:
    """The manifest's `calibration` block: where the representative images came from."""
    return {
        "source": calib.source,
        "samples": int(calib.x.shape[0]),
        "synthetic": calib.synthetic,
        "skipped": list(calib.skipped),
        "note": (
            "calibrated on synthetic images: int8 scales are guesses and accuracy figures are "
            "meaningless; pass --calibration DIR with real images"
            if calib.synthetic
            else "calibrated on real images"
        ),
    }


def host_record() -> dict:
    """The manifest's `host` block: the CPU that converted and verified, and what it means for int8."""
    cpu = edgelib.cpu_info()
    return {"cpu": cpu, "int8_note": edgelib.int8_speed_note(cpu)}


# --------------------------------------------------------------------------- verification

# A converted model counts as broken when its outputs no longer follow the float model's. With random
# weights the top-1 classes of near-identical logits can flip freely, so agreement alone would raise
# false alarms on the headline command; correlation of the outputs catches real breakage (NaN, wrong
# scales, swapped layouts) either way.
MIN_OUTPUT_CORRELATION = 0.5


def verify(float_out: np.ndarray, tflite: bytes, calib: ImageBatch) -> dict:
    """Run the calibration images through the `.tflite` and compare with the Keras outputs."""
    m = edgelib.Model(tflite)
    q_out = m.predict(calib.x)
    if not np.all(np.isfinite(q_out)):
        raise VerificationError(
            "the converted model outputs NaN or Inf", hint="this is a converter bug; report it"
        )
    diff = np.abs(q_out - float_out)
    agreement = float(np.mean(q_out.argmax(-1) == float_out.argmax(-1)))
    corr = _correlation(float_out, q_out)
    classes = float_out.shape[-1]
    result = {
        "images": int(calib.x.shape[0]),
        "synthetic_inputs": calib.synthetic,
        "top1_agreement": round(agreement, 4),
        "output_correlation": round(corr, 4),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "float_output_range": float(float_out.max() - float_out.min()),
        "chance_agreement": round(1.0 / classes, 4),
    }
    if corr < MIN_OUTPUT_CORRELATION:
        raise VerificationError(
            f"the converted model does not follow the float model: output correlation {corr:.2f}, "
            f"top-1 agreement {agreement:.0%} (chance {1 / classes:.0%})",
            hint="check the calibration data; try --quantize float16 to isolate int8",
        )
    return result


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel().astype(np.float64) - a.mean()
    b = b.ravel().astype(np.float64) - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    if den == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float((a * b).sum() / den)


def _keras_predict(model, x: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch, verbose=0), dtype=np.float32)


def _representative(x: np.ndarray):
    def gen():
        for i in range(x.shape[0]):
            yield x[i : i + 1]

    return gen


def _with_float32_first(precisions) -> list[str]:
    return ["float32", *[p for p in precisions if p != "float32"]]


def _io_details(data: bytes) -> dict:
    m = edgelib.Model(data)

    def one(d):
        scale, zp = d["quantization"]
        return {
            "name": d["name"],
            "dtype": np.dtype(d["dtype"]).name,
            "shape": [int(s) for s in d["shape"]],
            "scale": float(scale),
            "zero_point": int(zp),
        }

    return {"input": one(m.input), "output": one(m.output)}


def _versions(tf) -> dict:
    import keras  # noqa: PLC0415

    out = {
        "edgekit": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        from importlib.metadata import version  # noqa: PLC0415

        out["ai_edge_litert"] = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - optional
        pass
    return out


def _write_bundle(
    out: Path, manifest: dict, entries: list[dict], model, labels, extra_files: dict | None = None
) -> None:
    """Write everything into a temporary folder, then swap it into place (also used by edgekit.pipeline.onnx).

    `model` may be None (no Keras float model); `extra_files` maps further file names to bytes.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / LABELS).write_text("\n".join(labels) + "\n", encoding="utf-8")
        for e in entries:
            (tmp / e["file"]).write_bytes(e["_data"])
        for fname, data in (extra_files or {}).items():
            (tmp / fname).write_bytes(data)
        if model is not None:
            model.save(tmp / FLOAT_MODEL)
        names = [LABELS, *([FLOAT_MODEL] if model is not None else []), *[e["file"] for e in entries]]
        names += list(extra_files or {})
        manifest["files"] = file_entries(tmp, names)
        write_json_atomic(tmp / MANIFEST, manifest)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_into_place(tmp: Path, out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ModelFileError(f"output {out} exists and is not a folder", hint="choose another -o/--output")
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
