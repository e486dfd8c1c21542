"""Which back end quantizes each precision, and the LiteRT Quantizer path (`--quantizer litert`).

Two back ends:
- `converter`: TFLiteConverter on the SavedModel (needs TensorFlow; edgekit.converters.keras_tflite),
  the selective fallback through TFLite's QuantizationDebugger (edgekit.pipeline.quantize).
- `litert`: the LiteRT Quantizer (`ai-edge-quantizer`) on the float32 `.tflite`
  (edgekit.converters.tflite_quantize): no TensorFlow, so it also quantizes third-party float models
  and ONNX imports; its selective fallback keeps ops in float through recipe entries.

The default per precision is the one that measured more accurate on real models (BENCHMARKS.md,
section bench_quant); `record()` writes which back end and recipe made each file into the manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from edgekit.converters import tflite_quantize as tq
from edgekit.errors import DependencyError, UsageError, VerificationError

BACKENDS = ("converter", "litert")
# Measured on the rebuilt MobileNet v1 0.25/128 and ants-bees (bench_quant): see BENCHMARKS.md.
DEFAULT_BACKEND = {"int8": "converter", "dynamic": "converter", "float16": "converter", "float32": "converter"}
DEFAULT_RECIPE = tq.Recipe()  # static_wi8_ai8, per-channel, true min/max activation ranges
Progress = Callable[[str], None]


def backend_for(precision: str, requested: str | None) -> str:
    """The back end that makes `precision`: `requested` (--quantizer) or the measured default."""
    if requested is not None and requested not in BACKENDS:
        raise UsageError(f"--quantizer must be one of {', '.join(BACKENDS)}; received {requested!r}")
    if precision == "float32":
        return "converter"  # not quantized: the float32 conversion itself
    backend = requested or DEFAULT_BACKEND[precision]
    if requested is None and backend == "litert" and not tq.available():
        backend = "converter"  # a measured default never makes the optional extra mandatory
    if backend == "litert" and precision not in tq.PRECISIONS:
        raise UsageError(
            f"--quantizer litert makes {' and '.join(tq.PRECISIONS)}, not {precision}",
            hint=f"drop {precision} from --quantize or use --quantizer converter",
        )
    return backend


def require() -> None:
    """Fail early, before any TensorFlow work, when --quantizer litert cannot run."""
    try:
        tq.require()
    except tq.QuantizerMissing as exc:
        raise DependencyError(str(exc)) from None


def litert_recipe(precision: str, *, per_channel: bool = True, io: str = "int8") -> tq.Recipe:
    if precision == "int8" and io != "int8":
        raise UsageError(
            f"--quantizer litert writes int8 input and output; received --io {io}",
            hint="use --io int8, or --quantizer converter for uint8/float32 input",
        )
    return replace(DEFAULT_RECIPE, precision=precision, per_channel=per_channel)


def quantize_tflite(float_tflite: bytes, recipe: tq.Recipe, calib: np.ndarray | None) -> bytes:
    """ai-edge-quantizer on a float model, its failures as edgekit errors (one line, an exit code)."""
    try:
        return tq.quantize(float_tflite, recipe, calib)
    except tq.QuantizerMissing as exc:
        raise DependencyError(str(exc)) from None
    except tq.QuantizeFailed as exc:
        raise VerificationError(str(exc), hint="try --quantizer converter") from None


def record(backend: str, precision: str, *, per_channel: bool = True, io: str = "int8", recipe=None) -> dict:
    """The manifest's `models[].quantizer` block: what made this file, with which settings."""
    if backend == "litert":
        return {"backend": "litert", "tool": tq.PACKAGE, "version": tq.version(), "recipe": recipe.to_dict()}
    settings: dict = {}
    if precision == "int8":
        settings = {"per_channel": per_channel, "io": io, "ranges": "minmax", "supported_ops": "TFLITE_BUILTINS_INT8"}
    elif precision == "float16":
        settings = {"supported_types": ["float16"]}
    elif precision == "dynamic":
        settings = {"weights": "int8", "activations": "float32 (quantized on the fly)"}
    return {"backend": "converter", "tool": "tf.lite.TFLiteConverter", "precision": precision, **settings}


def litert_search(float_tflite: bytes, recipe: tq.Recipe, calib: np.ndarray) -> Callable:
    """--max-drop through the LiteRT Quantizer, for edgekit.pipeline.quantize.export_accuracy: ops are
    ranked by their int8 error against the float model, then re-quantized with the worst in float."""
    from edgekit.pipeline import quantize as qz

    def search(int8: bytes, **kw) -> tuple[bytes, dict]:
        return qz.search_budget(
            int8,
            rank=lambda: tq.tensor_errors(float_tflite, int8, calib[: qz.DEBUG_IMAGES]),
            build=lambda deny: quantize_tflite(float_tflite, replace(recipe, float_ops=tuple(deny)), calib),
            **kw,
        )

    return search


# --------------------------------------------------------------------------- any float .tflite


def quantize_file(
    path: str,
    *,
    calibration: str | None,
    samples: int,
    precision: str = "int8",
    recipe: tq.Recipe | None = None,
    output: str | None = None,
    progress: Progress = lambda _m: None,
) -> dict:
    """Quantize a float `.tflite` (third-party, ONNX import, edgekit's own) without TensorFlow.

    Preprocessing comes from the model (embedded metadata, else [-1, 1] at its input size); the
    result is checked against the float model on the calibration images, as export checks its own."""
    from pathlib import Path

    from edgekit.bundle.manifest import sha256_file
    from edgekit.converters import tflite_file
    from edgekit.data.datasets import load_calibration
    from edgekit.device_scripts import edgelib
    from edgekit.errors import ModelFileError
    from edgekit.pipeline.verify import verify

    src = Path(path)
    try:
        data = tflite_file.check_file(src)
        model = edgelib.Model(data)
    except tflite_file.NotTFLiteError as exc:
        raise ModelFileError(str(exc), hint="pass a float .tflite") from None
    except (RuntimeError, ValueError) as exc:
        raise ModelFileError(f"{src} cannot be loaded by the TFLite interpreter: {exc}") from None
    if model.input["dtype"] != np.float32:
        raise ModelFileError(
            f"{src} is already quantized (input {np.dtype(model.input['dtype']).name})",
            hint="pass the float model it was made from",
        )
    recipe = recipe or replace(DEFAULT_RECIPE, precision=precision)
    prep = edgelib.default_preprocessing(model)
    progress("loading calibration data")
    calib = load_calibration(calibration, prep, samples)
    progress(f"quantizing to {precision} with the LiteRT Quantizer ({recipe.name})")
    q = quantize_tflite(data, recipe, calib.x if precision == "int8" else None)
    progress("verifying against the float model")
    check = verify(model.predict(calib.x), q, calib)
    out = Path(output) if output else src.with_name(f"{src.stem}_{precision}.tflite")
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(q)
    tmp.replace(out)
    return {
        "schema_version": 1,
        "input": str(src),
        "output": str(out),
        "precision": precision,
        "quantizer": record("litert", precision, recipe=recipe),
        "preprocessing": prep,
        "calibration": {"source": calib.source, "samples": int(len(calib.x)), "synthetic": calib.synthetic},
        "size_bytes": {"float": len(data), "quantized": len(q)},
        "sha256": sha256_file(out),
        "verification": check,
    }
