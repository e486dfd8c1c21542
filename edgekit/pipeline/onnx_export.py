"""`edgekit export --format onnx`: a hook for export_bundle that adds float32 and int8 (QDQ) ONNX files."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgekit.data.datasets import ImageBatch
from edgekit.errors import DependencyError, VerificationError
from edgekit.pipeline.onnx import dist_version, onnx_call
from edgekit.pipeline.onnx_verify import FLOAT32_MAX_REL_DIFF

Progress = Callable[[str], None]


def onnx_extras(precisions) -> Callable:
    """A hook for export_bundle: float32 (+ int8 QDQ when int8 is exported) ONNX files, verified.

    float32 is checked against the Keras model (ONNX Runtime, same inputs); int8 QDQ is calibrated on
    the same images as the TFLite int8 and its top-1 agreement with Keras is recorded.
    """

    def hook(model, calib: ImageBatch, name: str, progress: Progress) -> tuple[dict, dict]:
        return export_onnx(model, calib, name, precisions, progress)

    return hook



def export_onnx(model, calib: ImageBatch, name: str, precisions, progress: Progress = lambda _m: None):
    """(manifest additions, {file name: bytes}) with the Keras `model` as ONNX."""
    from edgekit.converters import keras_onnx, onnx_check, onnx_quantize
    from edgekit.pipeline.verify import correlation, keras_predict

    try:
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        raise DependencyError(
            f"tf2onnx is not installed ({exc})", hint="pip install 'edgekit[onnx]'"
        ) from None
    progress("exporting ONNX (tf2onnx)")
    float_model, folded = keras_onnx.to_onnx(model)
    ref = keras_predict(model, calib.x)
    entries, files = [], {}
    wanted = ["float32", *(["int8"] if "int8" in precisions else [])]
    for p in wanted:
        if p == "int8":
            progress("quantizing ONNX to int8 (ONNX Runtime static QDQ)")
            m = onnx_call(onnx_quantize.quantize_qdq, float_model, calib.x)
        else:
            m = float_model
        data = m.SerializeToString()
        out = onnx_call(onnx_check.run, onnx_call(onnx_check.session, data), calib.x)[0]
        diff = np.abs(out - ref)
        scale = float(np.abs(ref).max()) or 1.0
        ver = {
            "reference": "keras",
            "images": int(calib.x.shape[0]),
            "synthetic_inputs": calib.synthetic,
            "top1_agreement": round(float(np.mean(out.argmax(-1) == ref.argmax(-1))), 4),
            "output_correlation": round(correlation(ref, out), 6),
            "max_abs_diff": float(diff.max()),
            "max_rel_diff": float(diff.max() / scale),
        }
        if p == "float32" and ver["max_rel_diff"] > FLOAT32_MAX_REL_DIFF:
            raise VerificationError(
                f"ONNX float32 differs from Keras by {ver['max_rel_diff']:.2e} of the output scale "
                f"(tolerance {FLOAT32_MAX_REL_DIFF:.0e})"
            )
        fname = f"{name}_{p}.onnx"
        files[fname] = data
        entries.append(
            {
                "file": fname,
                "precision": p,
                "format": "onnx" if p == "float32" else "onnx-qdq",
                "size_bytes": len(data),
                "ops": _op_histogram(m),
                "verification": ver,
            }
        )
    add = {
        "onnx_models": entries,
        "onnx_export": {
            "converter": f"tf2onnx {dist_version('tf2onnx')}",
            "opset": keras_onnx.OPSET,
            "input_layout": "NHWC",
            "folded_into_conv": {k: getattr(folded, k) for k in ("batchnorm", "mul", "add", "gemm")},
            "quantization": "onnxruntime static QDQ, uint8 activations, int8 per-channel 7-bit-range weights, MinMax",
            "onnxruntime": dist_version("onnxruntime"),
        },
    }
    return add, files



def _op_histogram(model) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in model.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return out
