"""Loading, validating and running ONNX models (ONNX Runtime is the reference for every ONNX hop).

A malformed file must end as one line saying what is wrong, never a protobuf traceback, so every
failure of `onnx.load` / `onnx.checker` is turned into OnnxModelError here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class OnnxModelError(ValueError):
    """The file is not a usable ONNX model (missing, corrupt, no graph, failed checker)."""


class MissingOnnxPackage(ImportError):
    """onnx / onnxruntime is not installed in this environment."""


def require_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise MissingOnnxPackage(f"the onnx package is not installed ({exc})") from exc
    return onnx


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingOnnxPackage(f"the onnxruntime package is not installed ({exc})") from exc
    return onnxruntime


def load(path: str | Path):
    """Read and check an ONNX file; returns the ModelProto."""
    p = Path(path)
    if not p.is_file():
        raise OnnxModelError(f"ONNX file {p} does not exist")
    data = p.read_bytes()
    return load_bytes(data, str(p))


def load_bytes(data: bytes, name: str = "model"):
    onnx = require_onnx()
    if not data:
        raise OnnxModelError(f"{name} is empty (0 bytes)")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:
        raise OnnxModelError(
            f"{name} is not an ONNX model (protobuf decode failed: {_first_line(exc)})"
        ) from None
    if not model.HasField("graph") or not model.graph.node:
        raise OnnxModelError(f"{name} holds no ONNX graph (truncated, or not an ONNX file)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise OnnxModelError(f"{name} fails the ONNX checker: {_first_line(exc)}") from None
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0][:200]


def graph_inputs(model) -> list:
    """Real graph inputs (initializers listed as inputs by old exporters are left out)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def static_shape(value_info) -> list[int | None]:
    """Dims of a ValueInfo; symbolic or unknown dims are None."""
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]


def opset(model) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def session(model_or_bytes, threads: int | None = None):
    """An ONNX Runtime CPU session on a ModelProto or serialized bytes."""
    ort = require_onnxruntime()
    data = model_or_bytes if isinstance(model_or_bytes, bytes) else model_or_bytes.SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # warnings about unused initializers are noise here
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OnnxModelError(f"ONNX Runtime cannot load the model: {_first_line(exc)}") from None


def run(sess, x: np.ndarray, batch: int = 1) -> list[np.ndarray]:
    """All outputs for input `x` (in the ONNX model's own layout), `batch` images per call.

    Models exported with a fixed batch of 1 are common, so batch 1 is the safe default.
    """
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    if isinstance(fixed, int) and fixed > 0:
        batch = fixed
    outs: list[list[np.ndarray]] = []
    for start in range(0, x.shape[0], batch):
        res = sess.run(None, {name: np.ascontiguousarray(x[start : start + batch], dtype=np.float32)})
        outs.append([np.asarray(r, dtype=np.float32) for r in res])
    return [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]
