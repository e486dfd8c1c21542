"""The interpreter: which runtime, loading a model with its size cap, and its embedded metadata.

Part of edgelib (see its docstring): numpy and the standard library only; never edgekit.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np

# --------------------------------------------------------------------------- interpreter

RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")


def import_interpreter(prefer: str | None = None):
    """(Interpreter class, runtime name, version), trying ai_edge_litert, tflite_runtime, tensorflow."""
    order = [prefer] if prefer else list(RUNTIMES)
    errors = []
    for name in order:
        try:
            if name == "ai_edge_litert":
                from ai_edge_litert.interpreter import Interpreter

                return Interpreter, name, _version("ai-edge-litert", "ai_edge_litert")
            if name == "tflite_runtime":
                from tflite_runtime.interpreter import Interpreter

                return Interpreter, name, _version("tflite-runtime", "tflite_runtime")
            if name == "tensorflow":
                import tensorflow as tf

                return tf.lite.Interpreter, name, tf.__version__
            errors.append(f"{name}: unknown runtime")
        except Exception as exc:  # ImportError, or a broken native wheel
            errors.append(f"{name}: {exc.__class__.__name__}: {exc}")
    raise RuntimeError(
        "no TFLite interpreter could be imported (" + "; ".join(errors) + "); "
        "install one: pip install ai-edge-litert (or tflite-runtime on 32-bit ARM)"
    )


def _version(dist: str, module: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        mod = __import__(module)
        return getattr(mod, "__version__", "unknown")


def _op_resolver(runtime: str):
    if runtime == "ai_edge_litert":
        from ai_edge_litert.interpreter import OpResolverType
    elif runtime == "tflite_runtime":
        from tflite_runtime.interpreter import OpResolverType
    else:
        import tensorflow as tf

        OpResolverType = tf.lite.experimental.OpResolverType
    return OpResolverType


class NotAClassifier(ValueError):
    """A model that loads but has no input or no output tensor to feed or read."""


class TooLarge(ValueError):
    """A model whose tensors would take more memory than any device has (a corrupt shape)."""


DEFAULT_MAX_TENSOR_BYTES = 4 << 30


def max_tensor_bytes() -> int:
    try:
        return max(1, int(os.environ.get("EDGEKIT_MAX_TENSOR_BYTES", DEFAULT_MAX_TENSOR_BYTES)))
    except ValueError:
        return DEFAULT_MAX_TENSOR_BYTES


def declared_tensor_bytes(interpreter) -> int:
    """The bytes a model's tensors declare (read before anything is allocated)."""
    total = 0
    for d in interpreter.get_tensor_details():
        n = 1
        for s in d["shape"]:
            n *= max(int(s), 1)
        try:
            total += n * np.dtype(d["dtype"]).itemsize
        except TypeError:
            total += n
    return total


class Model:
    """A loaded `.tflite` with float-in / float-out helpers that handle (de)quantization."""

    def __init__(
        self, content: bytes, threads: int | None = None, runtime: str | None = None, xnnpack: bool = True
    ):
        Interpreter, self.runtime, self.runtime_version = import_interpreter(runtime)
        kwargs = {"model_content": content}
        if threads:
            kwargs["num_threads"] = int(threads)
        self.threads = int(threads) if threads else None
        self.xnnpack = bool(xnnpack)
        if not xnnpack:  # the plain reference kernels, for comparison with the default XNNPACK delegate
            kwargs["experimental_op_resolver_type"] = _op_resolver(
                self.runtime
            ).BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.interpreter = Interpreter(**kwargs)
        declared, cap = declared_tensor_bytes(self.interpreter), max_tensor_bytes()
        if declared > cap:  # before allocate_tensors: a corrupt shape must not take the memory first
            raise TooLarge(
                f"it declares {declared / 2**30:.1f} GiB of tensors, over the {cap / 2**30:g} GiB cap "
                "(EDGEKIT_MAX_TENSOR_BYTES): corrupt, or far too large for a device"
            )
        self.interpreter.allocate_tensors()
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if not inputs or not outputs:
            raise NotAClassifier(f"it has no {'input' if not inputs else 'output'} tensors")
        self.n_inputs, self.n_outputs = len(inputs), len(outputs)
        self.input, self.output = inputs[0], outputs[0]
        self.labels, self.meta = read_embedded(content)

    @classmethod
    def from_file(cls, path: str, threads: int | None = None, runtime: str | None = None) -> Model:
        with open(path, "rb") as f:
            return cls(f.read(), threads=threads, runtime=runtime)

    @property
    def input_shape(self) -> tuple:
        return tuple(int(d) for d in self.input["shape"])

    @property
    def input_size(self) -> tuple[int, int]:
        _, h, w, _ = self.input_shape
        return h, w

    def resize_batch(self, batch: int) -> None:
        shape = list(self.input_shape)
        if shape[0] == batch:
            return
        shape[0] = batch
        self.interpreter.resize_tensor_input(self.input["index"], shape, strict=False)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float (already normalised) input -> the model's input dtype."""
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zp = self.input["quantization"]
        if not scale:
            return x.astype(dtype)
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        if self.output["dtype"] == np.float32:
            return y.astype(np.float32)
        scale, zp = self.output["quantization"]
        if not scale:
            return y.astype(np.float32)
        return (y.astype(np.float32) - zp) * scale

    def invoke_raw(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Normalised float NHWC batch -> dequantized float outputs, one invoke per image."""
        outs = []
        for i in range(x.shape[0]):
            outs.append(self.dequantize_output(self.invoke_raw(self.quantize_input(x[i : i + 1])))[0])
        return np.stack(outs) if outs else np.zeros((0,), np.float32)


# --------------------------------------------------------------------------- embedded metadata


def read_embedded(content: bytes):
    """(labels, meta) from the zip edgekit appends to a `.tflite` (TFLite Support convention)."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as zf:
            names = set(zf.namelist())
            labels = None
            for cand in ("labels.txt", "labelmap.txt", "labels"):
                if cand in names:
                    labels = [ln.strip() for ln in zf.read(cand).decode("utf-8").splitlines() if ln.strip()]
                    break
            meta = json.loads(zf.read("edgekit_meta.json")) if "edgekit_meta.json" in names else None
            return labels, meta
    except Exception:
        return None, None
