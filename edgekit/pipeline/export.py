"""`edgekit export`: build or load a model, calibrate, convert, verify, and write a bundle.

Orchestration only: architectures come from edgekit.models, converter settings from
edgekit.pipeline.quantize presets, file formats from edgekit.converters, the manifest from edgekit.bundle.manifest.
The bundle is written into a temporary folder beside the target and renamed into place, so an
interrupted export never leaves half a bundle (and an existing bundle survives a failed one).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgekit.bundle.manifest import LABELS, SCHEMA_VERSION, default_labels
from edgekit.bundle.writer import (
    FLOAT_MODEL,
    calibration_record,
    host_record,
    io_details,
    versions,
    write_bundle,
)
from edgekit.config import ExportConfig, Preprocessing, QuantizeConfig
from edgekit.data.datasets import load_calibration
from edgekit.errors import VerificationError, require_tensorflow
from edgekit.models import build_model, variant_name
from edgekit.models.batchnorm import recalibrate_batchnorm
from edgekit.models.counting import count_macs, count_params
from edgekit.pipeline.source import SourceModel
from edgekit.pipeline.verify import keras_predict, verify

Progress = Callable[[str], None]


def build_source(cfg: ExportConfig) -> SourceModel:
    """Build a fresh model (random weights) or load `--weights`."""
    require_tensorflow()
    if cfg.weights:
        from edgekit.pipeline.weights import load_weights

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
    from edgekit.pipeline import litert_quant as lq

    backends = {p: lq.backend_for(p, cfg.quantizer) for p in cfg.precisions}
    if "litert" in backends.values():
        lq.require()  # before any TensorFlow work: one line when ai-edge-quantizer is missing
        if "int8" in cfg.precisions and backends["int8"] == "litert":
            lq.litert_recipe("int8", io=cfg.io)  # --io the LiteRT Quantizer cannot write: say so now
    tf = require_tensorflow()
    from edgekit.converters import keras_tflite, tflite_metadata

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
    float_out = keras_predict(model, calib.x)
    from edgekit.pipeline import quantize as qz

    acc_data = qz.labelled_eval_data(src.eval_data, calib, src.labels)
    acc_float = keras_predict(model, acc_data[0]) if acc_data else None

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
    float32_flat = b""
    with keras_tflite.saved_model(model) as saved:
        for precision in _with_float32_first(cfg.precisions):
            q = QuantizeConfig.preset(precision, io=cfg.io)
            backend = backends.get(precision, "converter")
            recipe = lq.litert_recipe(precision, per_channel=q.per_channel, io=q.io) if backend == "litert" else None
            progress(f"converting to {precision}" + (" with the LiteRT Quantizer" if recipe else ""))
            t0 = time.perf_counter()
            if recipe is not None:
                flat = lq.quantize_tflite(float32_flat, recipe, calib.x if precision == "int8" else None)
            else:
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
            if precision == "float32":
                float32_flat = flat
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
                    search=lq.litert_search(float32_flat, recipe, calib.x) if recipe else None,
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
                    "io": io_details(data),
                    "size_bytes": len(data),
                    "flatbuffer_bytes": len(flat),
                    "verification": verification,
                    "quantizer": lq.record(backend, precision, per_channel=q.per_channel, io=q.io, recipe=recipe),
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
        "versions": versions(tf),
        "host": host_record(),
    }
    extra_files = {}
    if extras is not None:  # e.g. ONNX models for `export --format onnx` (edgekit.pipeline.onnx_export.onnx_extras)
        add, extra_files = extras(model, calib, name, progress)
        manifest.update(add)
    progress("writing bundle")
    write_bundle(out, manifest, entries, model, src.labels, extra_files)
    return out, manifest


# --------------------------------------------------------------------------- verification


def _representative(x: np.ndarray):
    def gen():
        for i in range(x.shape[0]):
            yield x[i : i + 1]

    return gen


def _with_float32_first(precisions) -> list[str]:
    return ["float32", *[p for p in precisions if p != "float32"]]


