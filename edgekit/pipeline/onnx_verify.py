"""Does a `.tflite` converted from ONNX still compute what ONNX Runtime computes? (`edgekit convert`)

Named tolerances, pinned by tests/onnx/test_tolerances.py so they cannot drift silently.
"""

from __future__ import annotations

import math
import re

import numpy as np

from edgekit.bundle.modelcheck import load_model
from edgekit.data.datasets import ImageBatch
from edgekit.errors import VerificationError

# Named thresholds (README "Verification thresholds"), each pinned by a test that shows it refusing a
# broken model: tests/onnx/test_tolerances.py.
FLOAT32_MAX_REL_DIFF = 1e-4  # max |LiteRT - ONNX Runtime| / max |ONNX Runtime output|
FLOAT16_MAX_REL_DIFF = 1e-2
# int8 must keep INT8_MIN_AGREEMENT top-1 agreement with ONNX Runtime float on real images. Judged on n
# images, a good conversion still shows a few disagreements: near-tied logits flip with any change of
# float rounding (another CPU, TensorFlow's oneDNN kernels on Intel). So the gate is a one-sided
# binomial test: refuse only when more images disagree than a conversion with exactly the required
# agreement would show in all but INT8_AGREEMENT_ALPHA of samples of this size (60 images: up to 4).
INT8_MIN_AGREEMENT = 0.98
INT8_AGREEMENT_ALPHA = 0.01
# ... and its outputs must follow the float model's (edgekit.pipeline.verify.MIN_OUTPUT_CORRELATION):
# that catches a broken int8 model even on a handful of images, where agreement proves little.


def allowed_disagreements(
    n: int, min_agreement: float = INT8_MIN_AGREEMENT, alpha: float = INT8_AGREEMENT_ALPHA
) -> int:
    """The most top-1 disagreements out of `n` images that still pass the int8 agreement gate."""
    p = 1.0 - min_agreement
    if p <= 0:
        return 0
    if p >= 1:
        return n
    tail = 1.0  # P(at least k disagreements) for a conversion exactly at min_agreement
    for k in range(n + 1):
        if tail < alpha:
            return k - 1
        log_pmf = (
            math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p)
        )  # fmt: skip
        tail -= math.exp(log_pmf)
    return n


def verify_against_onnx(
    ref: list[np.ndarray], tflite: bytes, calib: ImageBatch, precision: str, min_agreement: float
) -> dict:
    """LiteRT on the `.tflite` vs ONNX Runtime on the ONNX model, same images, every output."""
    from edgekit.converters import onnx_tflite
    from edgekit.pipeline.verify import correlation

    outs = _litert_outputs(tflite, calib.x)
    if len(outs) != len(ref):
        raise VerificationError(f"the converted model has {len(outs)} outputs; the ONNX model has {len(ref)}")
    per_output = []
    for i, (r, o) in enumerate(zip(ref, outs, strict=True)):
        if o.shape != r.shape:
            o = o.reshape(r.shape) if o.size == r.size else o
        if not np.all(np.isfinite(o)):
            raise VerificationError(f"the {precision} model outputs NaN or Inf (output {i})")
        diff = np.abs(o - r)
        scale = float(np.abs(r).max()) or 1.0
        fig = {
            "index": i,
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "output_scale": scale,
            "max_rel_diff": float(diff.max() / scale),
            "correlation": round(correlation(r, o), 6),
        }
        if r.ndim == 2 and r.shape[-1] > 1:
            fig["top1_agreement"] = round(float(np.mean(o.argmax(-1) == r.argmax(-1))), 4)
            fig["top1_disagreements"] = int(np.sum(o.argmax(-1) != r.argmax(-1)))
        per_output.append(fig)
    main = per_output[0]
    ops = onnx_tflite.op_counts(tflite)
    result = {
        "reference": "onnxruntime",
        "images": int(calib.x.shape[0]),
        "synthetic_inputs": calib.synthetic,
        "top1_agreement": main.get("top1_agreement"),
        "output_correlation": main["correlation"],
        "max_abs_diff": main["max_abs_diff"],
        "mean_abs_diff": main["mean_abs_diff"],
        "max_rel_diff": main["max_rel_diff"],
        "float_output_range": float(ref[0].max() - ref[0].min()),
        "outputs": per_output,
        "ops": ops,
        "transposes": int(ops.get("TRANSPOSE", 0)),
    }
    tol = {"float32": FLOAT32_MAX_REL_DIFF, "float16": FLOAT16_MAX_REL_DIFF}.get(precision)
    if tol is not None:
        result["tolerance_rel"] = tol
        worst = max(f["max_rel_diff"] for f in per_output)
        result["passed"] = worst <= tol
        if not result["passed"]:
            raise VerificationError(
                f"{precision} model differs from ONNX Runtime by {worst:.2e} of the output scale "
                f"(tolerance {tol:.0e})",
                hint="a converter bug: try --backend onnx2tf and report the model",
            )
    elif precision == "int8":
        result.update(_int8_gate(main, calib, min_agreement))
    return result



def _int8_gate(main: dict, calib: ImageBatch, min_agreement: float) -> dict:
    """Judge an int8 model's agreement (binomial gate) and output correlation; raise when refused."""
    from edgekit.pipeline.verify import MIN_OUTPUT_CORRELATION

    n = int(calib.x.shape[0])
    out = {"min_agreement": min_agreement, "agreement_alpha": INT8_AGREEMENT_ALPHA}
    if calib.synthetic:
        out["passed"] = None  # synthetic inputs: agreement says nothing about real accuracy
        out["note"] = "synthetic calibration images: agreement not checked; pass --calibration DIR"
        return out
    if main["correlation"] < MIN_OUTPUT_CORRELATION:
        raise VerificationError(
            f"the int8 model does not follow ONNX Runtime: output correlation {main['correlation']:.2f} "
            f"(needs {MIN_OUTPUT_CORRELATION})",
            hint="check the calibration images and --mean/--std; try --quantize float16 to isolate int8",
        )
    agree = main.get("top1_agreement")
    if agree is None:  # not a classifier output: correlation is the check
        out["passed"] = True
        return out
    disagree = main["top1_disagreements"]
    allowed = allowed_disagreements(n, min_agreement)
    out.update(disagreements=disagree, allowed_disagreements=allowed, passed=disagree <= allowed)
    if not out["passed"]:
        raise VerificationError(
            f"int8 top-1 agreement with ONNX Runtime is {agree:.1%} on {n} images: {disagree} disagree, "
            f"more than the {allowed} a conversion keeping {min_agreement:.0%} would show "
            f"(binomial test at {INT8_AGREEMENT_ALPHA:.0%})",
            hint="calibrate on more representative images, or use --quantize float16",
        )
    return out


def _litert_outputs(tflite: bytes, x: np.ndarray) -> list[np.ndarray]:
    """Every output of a `.tflite` (dequantized), one image per invoke, in ONNX output order."""
    m = load_model(tflite, name="the converted model")
    it = m.interpreter
    details = it.get_output_details()
    outs: list[list[np.ndarray]] = [[] for _ in details]
    for i in range(x.shape[0]):
        it.set_tensor(m.input["index"], m.quantize_input(x[i : i + 1]))
        it.invoke()
        for k, d in enumerate(details):
            y = it.get_tensor(d["index"])
            scale, zp = d["quantization"]
            y = (
                (y.astype(np.float32) - zp) * scale
                if d["dtype"] != np.float32 and scale
                else y.astype(np.float32)
            )
            outs[k].append(y)
    # TFLite may list outputs in another order than ONNX; names keep ONNX's order (StatefulPartitionedCall:k).
    order = sorted(range(len(details)), key=lambda k: _output_rank(details[k]["name"], k))
    return [np.concatenate(outs[k]) for k in order]



def _output_rank(name: str, k: int) -> int:
    m = re.search(r":(\d+)$", name)
    return int(m.group(1)) if m else k
