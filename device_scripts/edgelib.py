"""Shared helpers for the device scripts: interpreter choice, model I/O, preprocessing, CPU facts.

Runs on the device with Python 3.9+, numpy and one interpreter. It must never import edgekit,
TensorFlow (except as the last interpreter fallback), click or rich. The desktop imports this same
file as `edgekit.device_scripts.edgelib`, so host and device run one implementation.
"""

from __future__ import annotations

import io
import json
import os
import platform
import zipfile

import numpy as np

SCHEMA_VERSION = 1
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")


# --------------------------------------------------------------------------- interpreter


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


class Model:
    """A loaded `.tflite` with float-in / float-out helpers that handle (de)quantization."""

    def __init__(self, content: bytes, threads: int | None = None, runtime: str | None = None):
        Interpreter, self.runtime, self.runtime_version = import_interpreter(runtime)
        kwargs = {"model_content": content}
        if threads:
            kwargs["num_threads"] = int(threads)
        self.interpreter = Interpreter(**kwargs)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
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


# --------------------------------------------------------------------------- numerics


def softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def to_probabilities(outputs: np.ndarray, output_kind: str | None = None) -> np.ndarray:
    """Scores that sum to one: softmax for logits, pass-through for probability outputs."""
    if output_kind == "probabilities":
        return outputs
    if output_kind is None:
        s = outputs.sum(axis=-1)
        if outputs.min() >= 0 and np.all(np.abs(s - 1) < 0.05):
            return outputs
    return softmax(outputs)


def percentiles_ms(samples_s) -> dict:
    a = np.asarray(samples_s, dtype=np.float64) * 1000.0
    if a.size == 0:
        return {}
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "min": float(a.min()),
        "max": float(a.max()),
    }


# --------------------------------------------------------------------------- the machine


def cpu_info() -> dict:
    """CPU model, cores and the SIMD features that decide int8 vs float speed."""
    flags: set[str] = set()
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip().lower()
                if key in ("flags", "features"):
                    flags.update(val.split())
                elif key in ("model name", "hardware", "cpu model") and not model:
                    model = val.strip()
                elif key == "model" and not model and not val.strip().isdigit():
                    model = val.strip()
    except OSError:
        pass
    if not model:
        try:  # Raspberry Pi and other device-tree boards
            with open("/proc/device-tree/model", encoding="utf-8", errors="replace") as f:
                model = f.read().strip("\x00\n ")
        except OSError:
            model = platform.machine()
    machine = platform.machine()
    simd = {
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx_vnni": "avx_vnni" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "neon": "neon" in flags or "asimd" in flags or machine in ("aarch64", "arm64"),
        "dotprod": "asimddp" in flags,
        "i8mm": "i8mm" in flags,
    }
    return {
        "model": model,
        "machine": machine,
        "cores": os.cpu_count() or 1,
        "simd": simd,
    }


def int8_speed_note(cpu: dict) -> str:
    """Why int8 is (or is not) faster than float on this CPU, in one sentence."""
    s = cpu.get("simd", {})
    machine = cpu.get("machine", "")
    if machine in ("aarch64", "arm64", "armv7l", "armv8l") or s.get("neon"):
        if s.get("dotprod") or s.get("i8mm"):
            return (
                "ARM with int8 dot-product (SDOT/I8MM): XNNPACK's int8 kernels do 4x the MACs per "
                "instruction of float, so int8 is typically 2-4x faster than float here."
            )
        return (
            "ARM NEON without dot-product: int8 still moves 4x less data and uses 16-lane integer "
            "multiply-accumulate, so int8 is typically 1.5-3x faster than float here."
        )
    if s.get("avx512_vnni") or s.get("avx_vnni"):
        return (
            "x86 with VNNI (VPDPBUSD): int8 multiply-accumulate is fused, so int8 is usually faster "
            "than float here."
        )
    if s.get("avx2"):
        return (
            "x86 AVX2 without VNNI: an int8 multiply-accumulate takes VPMADDUBSW+VPMADDWD+VPADDD "
            "(plus requantization) versus one FMA for float, so int8 is about as fast as float or "
            "slower here; it will be faster on ARM (Raspberry Pi) and VNNI CPUs. The 4x smaller "
            "model still holds."
        )
    return "no SIMD features recognised: int8 and float speeds are hard to predict on this CPU."


# --------------------------------------------------------------------------- images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class ImageReadError(ValueError):
    """An image file that cannot be decoded (corrupt, truncated, not an image)."""


def decode_image(path: str) -> np.ndarray:
    """RGB uint8 HxWx3 from a file, with OpenCV when present, else Pillow.

    Grayscale, RGBA and CMYK become RGB. Raises ImageReadError for unreadable files.
    """
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        data = np.fromfile(path, dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if img is not None:
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        # fall through: Pillow reads a few formats OpenCV does not (GIF, CMYK JPEG variants)
    try:
        from PIL import Image
    except ImportError as exc:
        if cv2 is None:
            raise ImageReadError("neither OpenCV nor Pillow is installed to decode images") from exc
        raise ImageReadError(f"cannot decode image {path}") from None
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as exc:
        raise ImageReadError(f"cannot decode image {path}: {exc.__class__.__name__}") from None


def resize_bilinear(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with half-pixel centres (the formula of cv2 INTER_LINEAR and tf.image.resize).

    Returns float32 so no rounding happens before normalisation.
    """
    h, w = int(size[0]), int(size[1])
    if img.shape[0] == h and img.shape[1] == w:
        return img.astype(np.float32)
    try:
        import cv2

        return cv2.resize(img.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    except ImportError:
        pass
    src = img.astype(np.float32)
    ys = (np.arange(h) + 0.5) * (src.shape[0] / h) - 0.5
    xs = (np.arange(w) + 0.5) * (src.shape[1] / w) - 0.5
    ys = np.clip(ys, 0, src.shape[0] - 1)
    xs = np.clip(xs, 0, src.shape[1] - 1)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, src.shape[0] - 1)
    x1 = np.minimum(x0 + 1, src.shape[1] - 1)
    wy = (ys - y0)[:, None, None]
    wx = (xs - x0)[None, :, None]
    top = src[y0][:, x0] * (1 - wx) + src[y0][:, x1] * wx
    bottom = src[y1][:, x0] * (1 - wx) + src[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def preprocess(img: np.ndarray, prep: dict) -> np.ndarray:
    """RGB uint8 image -> normalised float32 HxWx3, following a manifest's `preprocessing` block."""
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.shape[-1] == 4:
        img = img[..., :3]
    x = resize_bilinear(img, tuple(prep["size"]))
    mean = np.asarray(prep.get("mean", (0.0, 0.0, 0.0)), dtype=np.float32)
    std = np.asarray(prep.get("std", (1.0, 1.0, 1.0)), dtype=np.float32)
    return (x - mean) / std


def list_images(root: str) -> list[str]:
    """Image files below `root`, sorted, recursively."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.lower().endswith(IMAGE_EXTENSIONS) and not fn.startswith("."):
                out.append(os.path.join(dirpath, fn))
    return out


def default_preprocessing(model: Model) -> dict:
    """Preprocessing for a model: its embedded metadata, else a guess from its input tensor.

    A float model without metadata gets [-1, 1] scaling (the common TF Hub convention); a quantized
    input without metadata is fed raw pixels mapped through the input's own scale and zero-point.
    """
    if model.meta and "preprocessing" in model.meta:
        return dict(model.meta["preprocessing"])
    h, w = model.input_size
    if model.input["dtype"] == np.float32:
        return {"size": [h, w], "mean": [127.5] * 3, "std": [127.5] * 3, "color": "RGB", "source": "guessed"}
    scale, zp = model.input["quantization"]
    if scale:
        # Quantized input without metadata: feed raw pixels as the quantized values themselves
        # (uint8 q = p; int8 q = p - 128), the convention of the TFLite reference models.
        # q = x/scale + zp with x = (p - mean)/std gives q = p + info.min when:
        info = np.iinfo(model.input["dtype"])
        mean = float(zp - info.min)
        std = float(1.0 / scale)
        return {"size": [h, w], "mean": [mean] * 3, "std": [std] * 3, "color": "RGB", "source": "guessed"}
    return {"size": [h, w], "mean": [0.0] * 3, "std": [1.0] * 3, "color": "RGB", "source": "guessed"}
