"""Shared helpers for the device scripts: interpreter choice, model I/O, preprocessing, CPU facts.

Runs on the device with Python 3.9+, numpy and one interpreter. It must never import edgekit,
TensorFlow (except as the last interpreter fallback), click or rich. The desktop imports this same
file as `edgekit.device_scripts.edgelib`, so host and device run one implementation.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import platform
import sys
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


def parse_cpuinfo(text: str) -> tuple[str, set]:
    """(model name, feature flags) from the text of /proc/cpuinfo (x86 `flags`, ARM `Features`)."""
    flags: set[str] = set()
    model = ""
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features"):
            flags.update(val.split())
        elif key in ("model name", "hardware", "cpu model") and not model:
            model = val.strip()
        elif key == "model" and not model and not val.strip().isdigit():
            model = val.strip()  # Raspberry Pi: "Model : Raspberry Pi 4 Model B Rev 1.4"
    return model, flags


def simd_features(flags, machine: str) -> dict:
    """The SIMD features that decide int8 vs float speed."""
    return {
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx_vnni": "avx_vnni" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "amx_int8": "amx_int8" in flags,
        "neon": "neon" in flags or "asimd" in flags or machine in ("aarch64", "arm64"),
        "dotprod": "asimddp" in flags,
        "i8mm": "i8mm" in flags,
    }


def _processors(cpuinfo: str) -> int:
    return max(1, sum(1 for ln in cpuinfo.splitlines() if ln.partition(":")[0].strip() == "processor"))


def cpu_info(cpuinfo: str | None = None, machine: str | None = None) -> dict:
    """CPU model, cores and the SIMD features that decide int8 vs float speed.

    By default this machine's; `cpuinfo` (the text of a /proc/cpuinfo) and `machine` (its
    platform.machine()) describe a recorded CPU instead, as the tests do.
    """
    here = cpuinfo is None
    if here:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    machine = machine or platform.machine()
    model, flags = parse_cpuinfo(cpuinfo)
    if here:
        model = platform.processor() or model
    if here and not model:
        try:  # Raspberry Pi and other device-tree boards
            with open("/proc/device-tree/model", encoding="utf-8", errors="replace") as f:
                model = f.read().strip("\x00\n ")
        except OSError:
            model = machine
    emulated = emulation(machine, flags) if here else None
    if emulated:  # shown wherever the CPU is (CLI, database, reports): the timings are not a device's
        model = f"{model} [emulated {emulated}: latency not meaningful]"
    return {
        "model": model or machine,
        "machine": machine,
        "cores": (os.cpu_count() or 1) if here else _processors(cpuinfo),
        "simd": simd_features(flags, machine),
        "emulated": emulated,
    }


def emulation(machine: str, cpu_flags) -> str | None:
    """What emulates this CPU (qemu-user), or None on real hardware.

    edgekit's qemu wrapper says so in EDGEKIT_EMULATED; otherwise qemu-user (before 8.2) shows the
    host's /proc/cpuinfo, so x86 flags under an ARM Python (or the reverse) give it away.
    """
    label = os.environ.get("EDGEKIT_EMULATED", "").strip()
    if label:
        return label
    arm = machine.startswith(("aarch64", "arm"))
    x86 = machine in ("x86_64", "amd64", "i386", "i686")
    if arm and "sse2" in cpu_flags:
        return f"{machine} on an x86 CPU"
    if x86 and ("asimd" in cpu_flags or "neon" in cpu_flags):
        return f"{machine} on an ARM CPU"
    return None


def int8_expectation(cpu: dict) -> dict:
    """The rule of thumb for int8 vs float speed on this CPU: {"family", "expect", "reason"}.

    `expect` is "faster" (int8 should beat float), "not faster" (about as fast, or slower) or None (no
    rule). Only an expectation: edgekit.results.int8_speed weighs it against a measured latency.
    """
    s = cpu.get("simd", {})
    if cpu.get("machine", "") in ("aarch64", "arm64", "armv7l", "armv8l") or s.get("neon"):
        if s.get("dotprod") or s.get("i8mm"):
            return {
                "family": "ARM with int8 dot-product",
                "expect": "faster",
                "reason": "SDOT/I8MM let XNNPACK's int8 kernels do 4x the multiply-accumulates per "
                "instruction of float",
            }
        return {
            "family": "ARM NEON without dot-product",
            "expect": "faster",
            "reason": "int8 moves 4x less data and uses 16-lane integer multiply-accumulate",
        }
    if s.get("avx512_vnni") or s.get("avx_vnni"):
        amx = " (and AMX-INT8 tiles)" if s.get("amx_int8") else ""
        return {
            "family": "x86 with VNNI",
            "expect": "faster",
            "reason": f"VPDPBUSD{amx} fuses the int8 multiply-accumulate, 4 products per 32-bit lane "
            "where a float FMA does one",
        }
    if s.get("avx2"):
        return {
            "family": "x86 AVX2 without VNNI",
            "expect": "not faster",
            "reason": "an int8 multiply-accumulate takes VPMADDUBSW+VPMADDWD+VPADDD (plus requantization) "
            "where float takes one FMA",
        }
    return {"family": "this CPU", "expect": None, "reason": "no SIMD features recognised"}


def int8_speed_note(cpu: dict) -> str:
    """The rule of thumb as one sentence: the `int8_note` of profile documents and bundle manifests."""
    e = int8_expectation(cpu)
    if e["expect"] == "faster":
        return (
            f"{e['family']}: {e['reason']}, so int8 is usually faster than float here "
            "(a rule of thumb; `edgekit profile` measures it)."
        )
    if e["expect"] == "not faster":
        return (
            f"{e['family']}: {e['reason']}, so int8 is usually about as fast as float or slower here; "
            "ARM (Raspberry Pi) and VNNI CPUs favour int8. The 4x smaller model holds anywhere."
        )
    return "no SIMD features recognised: int8 and float speeds are hard to predict on this CPU."


# --------------------------------------------------------------------------- images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
# A decompression bomb (a 6 MB JPEG of 20000 x 20000 pixels) would take gigabytes once decoded: images
# over this many pixels, or files over MAX_IMAGE_BYTES, are skipped with a reason before any decoding.
# 50 Mpx holds a 48 Mpx phone photo (8000 x 6000); EDGEKIT_MAX_IMAGE_PIXELS changes it (here and on a device).
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
MAX_IMAGE_BYTES = 256 << 20


def max_image_pixels() -> int:
    try:
        return max(1, int(os.environ.get("EDGEKIT_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)))
    except ValueError:
        return DEFAULT_MAX_IMAGE_PIXELS


class ImageReadError(ValueError):
    """An image file that cannot be decoded (corrupt, truncated, not an image, too large, not a file)."""


def read_image_file(path: str) -> bytes:
    """The bytes of a regular file of at most MAX_IMAGE_BYTES; ImageReadError for anything else.

    Opened non-blocking, so a named pipe called x.jpg is refused instead of hanging the reader."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageReadError(f"{path} is not a regular file")
        if st.st_size > MAX_IMAGE_BYTES:
            raise ImageReadError(
                f"{path} is {st.st_size / 2**20:.0f} MiB, over the {MAX_IMAGE_BYTES >> 20} MiB image file cap"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def image_dimensions(data: bytes):
    """(width, height) from a PNG, JPEG, GIF, BMP or WebP header without decoding; None if unknown."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"BM" and len(data) >= 26:
        w = int.from_bytes(data[18:22], "little", signed=True)
        h = int.from_bytes(data[22:26], "little", signed=True)
        return abs(w), abs(h)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if chunk == b"VP8 ":
            return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if data[:2] == b"\xff\xd8":
        return _jpeg_dimensions(data)
    return None


def _jpeg_dimensions(data: bytes):
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 <= len(data):
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        i += 2 + length
    return None


def check_pixels(path: str, size) -> None:
    """ImageReadError when an image of `size` (width, height) is over the pixel cap."""
    if size is None:
        return
    w, h = int(size[0]), int(size[1])
    cap = max_image_pixels()
    if w * h > cap:
        raise ImageReadError(
            f"{path} is {w} x {h} pixels ({w * h / 1e6:.0f} Mpx), over the {cap / 1e6:g} Mpx cap "
            "(EDGEKIT_MAX_IMAGE_PIXELS)"
        )


def _pil_size(data: bytes):
    """(width, height) from Pillow's header parser (TIFF and the rest), None without Pillow."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:
        return None


def screen_image(path: str) -> str | None:
    """Why `path` would be skipped (not a regular file, too large, too many pixels), else None.

    What the desktop checks before it ships an image to a device."""
    try:
        data = read_image_file(path)
        check_pixels(path, image_dimensions(data) or _pil_size(data))
    except ImageReadError as exc:
        return str(exc)
    return None


def decode_image(path: str) -> np.ndarray:
    """RGB uint8 HxWx3 from a file, with OpenCV when present, else Pillow.

    Grayscale, RGBA and CMYK become RGB. Raises ImageReadError for unreadable files, files that are
    not regular files, and images over the pixel cap (checked from the header, before decoding).
    """
    data = read_image_file(path)
    check_pixels(path, image_dimensions(data) or _pil_size(data))
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if img is not None:
            check_pixels(path, (img.shape[1], img.shape[0]))
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        # fall through: Pillow reads a few formats OpenCV does not (GIF, CMYK JPEG variants)
    try:
        from PIL import Image
    except ImportError as exc:
        if cv2 is None:
            raise ImageReadError("neither OpenCV nor Pillow is installed to decode images") from exc
        raise ImageReadError(f"cannot decode image {path}") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            check_pixels(path, im.size)  # the header only: nothing is decoded yet
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except ImageReadError:
        raise
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


CROPS = ("none", "center")


def center_crop(img: np.ndarray, size) -> np.ndarray:
    """The largest centred window of `img` with the aspect ratio of `size` (height, width): a view."""
    h, w = img.shape[:2]
    th, tw = int(size[0]), int(size[1])
    if h * tw > w * th:  # taller than the target: trim top and bottom
        ch = max(1, int(round(w * th / tw)))
        top = (h - ch) // 2
        return img[top : top + ch]
    cw = max(1, int(round(h * tw / th)))
    left = (w - cw) // 2
    return img[:, left : left + cw]


def preprocess(img: np.ndarray, prep: dict) -> np.ndarray:
    """RGB uint8 image -> normalised float32 HxWx3, following a manifest's `preprocessing` block:
    `crop` none (the whole image, default) or center (centre window of the input's aspect ratio),
    then a bilinear resize to `size`, then (pixel - mean) / std."""
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.shape[-1] == 4:
        img = img[..., :3]
    crop = prep.get("crop") or "none"
    if crop == "center":
        img = center_crop(img, prep["size"])
    elif crop != "none":
        raise ValueError(f"preprocessing crop must be one of {', '.join(CROPS)}; received {crop!r}")
    x = resize_bilinear(img, tuple(prep["size"]))  # always a fresh float32 array: normalise in place
    x -= np.asarray(prep.get("mean", (0.0, 0.0, 0.0)), dtype=np.float32)
    x /= np.asarray(prep.get("std", (1.0, 1.0, 1.0)), dtype=np.float32)
    return x


def list_images(root: str) -> list[str]:
    """Image files below `root`, sorted, recursively."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.lower().endswith(IMAGE_EXTENSIONS) and not fn.startswith("."):
                out.append(os.path.join(dirpath, fn))
    return out


MAX_INPUT_SIDE = 8192  # preprocessing.size bound: a larger side is a corrupt manifest, not a model


def bundle_name_problem(name):
    """Why `name` is not a plain relative path inside a bundle (None when it is): no absolute path,
    no `..`, no empty or `.` part, no backslash or NUL."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty file name"
    if name.startswith("/") or "\\" in name or "\x00" in name:
        return "must be a relative path inside the bundle"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "must be a plain path inside the bundle (no `..`, `.` or empty parts)"
    return None


def _numbers(v, n_ok=(1, 3)) -> bool:
    return (
        isinstance(v, (list, tuple))
        and len(v) in n_ok
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
    )


def preprocessing_problem(prep):
    """Why a `preprocessing` block cannot be used (None when it can): the size is two whole numbers
    in [1, MAX_INPUT_SIDE], mean and std 1 or 3 finite numbers, std never 0."""
    if not isinstance(prep, dict):
        return "missing (an object with size, mean and std is required)" if prep is None else "must be an object"
    size = prep.get("size")
    if not (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_INPUT_SIDE for s in size)
    ):
        return f"size must be [height, width] with each in [1, {MAX_INPUT_SIDE}]; found {size!r}"
    for key in ("mean", "std"):
        if key in prep and not _numbers(prep[key]):
            return f"{key} must be 1 or 3 finite numbers; found {prep[key]!r}"
    if "std" in prep and any(s == 0 for s in prep["std"]):
        return f"std must not be 0; found {prep['std']!r}"
    return None


def default_preprocessing(model: Model) -> dict:
    """Preprocessing for a model: its embedded metadata, else a guess from its input tensor.

    A float model without metadata gets [-1, 1] scaling (the common TF Hub convention); a quantized
    input without metadata is fed raw pixels mapped through the input's own scale and zero-point.
    """
    if model.meta and "preprocessing" in model.meta:
        problem = preprocessing_problem(model.meta["preprocessing"])
        if problem:
            raise ModelFailure(f"the model's embedded preprocessing cannot be used: {problem}")
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


# --------------------------------------------------------------------------- script plumbing
# Exit codes mirror edgekit.errors.ExitCode, so the desktop maps a device failure to the same code.

EXIT_USAGE, EXIT_INPUT, EXIT_MODEL, EXIT_DEVICE, EXIT_DEPENDENCY, EXIT_INTERRUPTED = 2, 3, 4, 6, 8, 130


class ScriptError(Exception):
    """A user-facing failure of a device script: one line on stderr and an exit code."""

    exit_code = 1


class UsageFailure(ScriptError):
    exit_code = EXIT_USAGE


class InputFailure(ScriptError):
    exit_code = EXIT_INPUT


class ModelFailure(ScriptError):
    exit_code = EXIT_MODEL


class DeviceFailure(ScriptError):
    exit_code = EXIT_DEVICE


class DependencyFailure(ScriptError):
    exit_code = EXIT_DEPENDENCY


def run_main(main, argv=None) -> int:
    """Run a script's main(argv): ScriptError -> `error: ...` line + its exit code, Ctrl-C -> 130."""
    try:
        return int(main(argv) or 0)
    except ScriptError as exc:
        _stderr_line(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _stderr_line("error: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


def _stderr_line(text: str) -> None:
    try:
        sys.stderr.write(text.replace("\n", " ") + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def progress(message: str) -> None:
    """Progress for the desktop: it streams stderr lines that start with `progress: `."""
    _stderr_line(f"progress: {message}")


def warn(message: str) -> None:
    _stderr_line(f"warning: {message}")


def json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def emit_json(doc) -> None:
    """The result document: one line on stdout (the desktop takes the last JSON line)."""
    sys.stdout.write(json.dumps(doc, separators=(",", ":"), default=json_default) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- opening a model

TFLITE_IDENTIFIER = b"TFL3"


def check_tflite_bytes(data: bytes, name: str) -> None:
    """Cheap flatbuffer sanity check before native code sees the bytes (the desktop's
    converters/tflite_file.py calls this same function)."""
    if len(data) < 16:
        raise ModelFailure(f"{name} is {len(data)} bytes: too small to be a TFLite model (truncated?)")
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ModelFailure(
            f"{name} is not a TFLite flatbuffer (identifier {data[4:8]!r}, expected {TFLITE_IDENTIFIER!r})"
        )
    root = int.from_bytes(data[0:4], "little")
    if root < 8 or root + 4 > len(data):
        raise ModelFailure(
            f"{name} has a root offset {root} outside its {len(data)} bytes: truncated or corrupt"
        )
    vtable = root - int.from_bytes(data[root : root + 4], "little", signed=True)
    if vtable < 0 or vtable + 4 > len(data):
        raise ModelFailure(f"{name} has a corrupt flatbuffer table: truncated or corrupt")


def tensor_info(detail: dict) -> dict:
    scale, zp = detail.get("quantization", (0.0, 0))
    return {
        "name": str(detail.get("name", "")),
        "dtype": np.dtype(detail["dtype"]).name,
        "shape": [int(d) for d in detail["shape"]],
        "scale": float(scale),
        "zero_point": int(zp),
    }


class Context:
    """A loaded model with everything a script needs to feed it: preprocessing, labels, facts."""

    def __init__(
        self,
        model: Model,
        path: str,
        content: bytes,
        prep: dict,
        prep_source: str,
        labels: list,
        output_kind,
        precision,
        manifest=None,
    ) -> None:
        self.model = model
        self.path = path
        self.content = content
        self.prep = prep
        self.prep_source = prep_source  # "manifest" | "embedded" | "guessed"
        self.labels = labels
        self.output_kind = output_kind
        self.precision = precision
        self.manifest = manifest

    @property
    def num_classes(self) -> int:
        return int(np.prod(self.model.output["shape"][1:]))

    def model_info(self) -> dict:
        import hashlib

        return {
            "path": os.path.abspath(self.path),
            "file": os.path.basename(self.path),
            "size_bytes": len(self.content),
            "sha256": hashlib.sha256(self.content).hexdigest(),
            "precision": self.precision,
            "input": tensor_info(self.model.input),
            "output": tensor_info(self.model.output),
            "num_classes": self.num_classes,
            "preprocessing": self.prep,
            "preprocessing_source": self.prep_source,
        }

    def runtime_info(self) -> dict:
        return {
            "name": self.model.runtime,
            "version": self.model.runtime_version,
            "xnnpack": self.model.xnnpack,
            "threads": self.model.threads,
        }

    def reload(self, threads=None) -> Model:
        """A fresh interpreter on the same bytes (another thread count)."""
        return Model(self.content, threads=threads, runtime=self.model.runtime, xnnpack=self.model.xnnpack)

    def scores(self, raw_output: np.ndarray) -> np.ndarray:
        """Model output for one batch -> (batch, classes) probabilities."""
        y = self.model.dequantize_output(raw_output).reshape(raw_output.shape[0], -1)
        return to_probabilities(y, self.output_kind)

    def label(self, index: int) -> str:
        if self.labels and 0 <= index < len(self.labels):
            return self.labels[index]
        return f"class_{index}"


MAX_LABELS_BYTES = 16 << 20
BACKGROUND_LABELS = ("background", "__background__", "???", "bg")


def read_label_file(path: str) -> list:
    """One label per line (UTF-8, blank lines skipped); InputFailure with one line otherwise."""
    try:
        if os.path.getsize(path) > MAX_LABELS_BYTES:
            raise InputFailure(f"labels file {path} is over {MAX_LABELS_BYTES >> 20} MiB: not a labels file")
        with open(path, encoding="utf-8") as f:
            labels = [ln.strip() for ln in f if ln.strip()]
    except OSError as exc:
        raise InputFailure(f"cannot read labels file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputFailure(
            f"labels file {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}): save it as UTF-8"
        ) from None
    if not labels:
        raise InputFailure(f"labels file {path} is empty: write one label per line")
    return labels


def duplicate_labels(labels) -> list:
    """Labels that occur more than once, in order of first occurrence."""
    seen, dup = set(), []
    for lab in labels:
        if lab in seen and lab not in dup:
            dup.append(lab)
        seen.add(lab)
    return dup


def _bundle_entry(model_path: str):
    """(manifest, model entry) when the model sits in an edgekit bundle folder, else (None, None)."""
    folder = os.path.dirname(os.path.abspath(model_path))
    mpath = os.path.join(folder, "manifest.json")
    if not os.path.isfile(mpath):
        return None, None
    try:
        with open(mpath, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None, None
    models = manifest.get("models") if isinstance(manifest, dict) else None
    for entry in models if isinstance(models, list) else []:
        if isinstance(entry, dict) and entry.get("file") == os.path.basename(model_path):
            return manifest, entry
    return None, None


def _bundle_labels(manifest: dict, folder: str):
    """The bundle's own labels (None when it has no labels file): inside the bundle, unique, and as
    many as its num_classes."""
    mpath = os.path.join(folder, "manifest.json")
    name = manifest.get("labels_file") or "labels.txt"
    problem = bundle_name_problem(name)
    if problem:
        raise ModelFailure(f"{mpath}: labels_file {name!r} {problem}")
    lf = os.path.join(folder, name)
    if os.path.islink(lf):
        raise ModelFailure(f"{lf} is a symbolic link: a bundle holds plain files only (re-export it)")
    if not os.path.isfile(lf):
        return None
    labels = read_label_file(lf)
    dup = duplicate_labels(labels)
    if dup:
        raise ModelFailure(f"{lf} lists {dup[0]!r} twice: a bundle's labels must be unique (re-export it)")
    n = manifest.get("num_classes")
    if isinstance(n, int) and n != len(labels):
        raise ModelFailure(
            f"{mpath} says num_classes {n} but {name} has {len(labels)} labels: re-export the bundle"
        )
    return labels


def open_model(
    path: str, threads=None, labels_path=None, runtime=None, xnnpack: bool = True, labels: bool = True
) -> Context:
    """Check, load and describe an image classifier; raises ModelFailure/InputFailure with one line.

    `labels=False` (the probe) leaves the labels out: whether they fit is the caller's concern."""
    want_labels = labels
    if not os.path.isfile(path):
        raise ModelFailure(f"model file {path} does not exist")
    with open(path, "rb") as f:
        content = f.read()
    check_tflite_bytes(content, path)
    try:
        model = Model(content, threads=threads, runtime=runtime, xnnpack=xnnpack)
    except NotAClassifier as exc:
        raise ModelFailure(f"{path} is not an image classifier: {exc}") from None
    except TooLarge as exc:
        raise ModelFailure(f"{path}: {exc}") from None
    except RuntimeError as exc:
        if "no TFLite interpreter" in str(exc):
            raise DependencyFailure(str(exc)) from None
        raise ModelFailure(f"{path}: the interpreter cannot load it ({_one_line(exc)})") from None
    except Exception as exc:
        raise ModelFailure(f"{path}: the interpreter cannot load it ({_one_line(exc)})") from None
    _check_classifier(model, path)

    manifest, entry = _bundle_entry(path)
    meta = model.meta or {}
    if manifest is not None and "preprocessing" in manifest:
        folder = os.path.dirname(os.path.abspath(path))
        problem = preprocessing_problem(manifest["preprocessing"])
        if problem:
            raise ModelFailure(f"{os.path.join(folder, 'manifest.json')}: preprocessing: {problem}")
        prep, source = dict(manifest["preprocessing"]), "manifest"
        output_kind = manifest.get("output_kind")
        precision = entry.get("precision")
        labels = _bundle_labels(manifest, folder) if want_labels else None
    else:
        prep = default_preprocessing(model)
        source = "embedded" if meta.get("preprocessing") else "guessed"
        output_kind = meta.get("output_kind")
        precision = meta.get("precision")
        labels = None
    if labels is None and want_labels:
        labels = model.labels
    if labels_path and want_labels:
        labels = read_label_file(labels_path)
    n = int(np.prod(model.output["shape"][1:]))
    if labels:
        labels = _fit_labels(labels, n, labels_path or "the model's labels")
    if precision is None:
        precision = _guess_precision(model)
    if output_kind is None and _softmax_quantized(model.output):
        output_kind = "probabilities"  # else a flat frame's rounding (sum < 0.95) looked like logits
    if (prep.get("crop") or "none") not in CROPS:
        raise ModelFailure(
            f"{path}: preprocessing crop must be one of {', '.join(CROPS)}; received {prep.get('crop')!r}"
        )
    return Context(model, path, content, prep, source, labels or [], output_kind, precision, manifest)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or exc.__class__.__name__)


def _check_classifier(model: Model, path: str) -> None:
    """One image input (float32, int8 or uint8), one output of class scores."""
    if model.n_inputs != 1:
        raise ModelFailure(
            f"{path} is not an image classifier: it has {model.n_inputs} inputs; edgekit feeds one image"
        )
    if model.n_outputs != 1:
        raise ModelFailure(
            f"{path} is not an image classifier: it has {model.n_outputs} outputs; edgekit reads one "
            "output of class scores"
        )
    dtype = np.dtype(model.input["dtype"])
    if dtype not in (np.float32, np.int8, np.uint8):
        raise ModelFailure(
            f"{path} is not an image classifier: its input is {dtype.name}; expected float32, int8 or uint8"
        )
    shape = model.input_shape
    out = [int(d) for d in model.output["shape"]]
    if len(shape) != 4 or shape[-1] not in (1, 3):
        raise ModelFailure(
            f"{path} is not an image classifier: input shape {list(shape)}, expected [batch, height, "
            "width, 1 or 3]"
        )
    if len(out) < 2 or int(np.prod(out[1:])) < 2 or int(np.prod(out[1:])) != max(out[1:]):
        raise ModelFailure(
            f"{path} is not an image classifier: output shape {out}, expected [batch, classes]"
        )


def _fit_labels(labels: list, n: int, where: str) -> list:
    """Labels for n outputs. A first entry more than the outputs is dropped only when it names a
    background class (a TF label map); anything else would shift every label by one: refused."""
    if len(labels) == n:
        return labels
    if len(labels) == n + 1 and labels[0].strip().lower() in BACKGROUND_LABELS:
        warn(f"{where} has {len(labels)} entries for {n} outputs: dropping the first ({labels[0]!r})")
        return labels[1:]
    hint = "pass the matching labels file"
    if len(labels) + 1 == n:
        hint = "if output 0 is a background class, add a first line `background`; else " + hint
    raise InputFailure(f"{where} has {len(labels)} labels but the model has {n} outputs: {hint}"
    )


def _softmax_quantized(detail: dict) -> bool:
    """TFLite's quantized softmax output: scale 1/256 with zero point 0 (uint8) or -128 (int8)."""
    scale, zp = detail.get("quantization", (0.0, 0))
    return abs(float(scale) - 1 / 256) < 1e-9 and (
        (detail["dtype"] == np.uint8 and zp == 0) or (detail["dtype"] == np.int8 and zp == -128)
    )


def _guess_precision(model: Model) -> str:
    if model.input["dtype"] in (np.int8, np.uint8):
        return "int8"
    return "float32"


# --------------------------------------------------------------------------- inputs and outputs


def make_batch(model: Model, kind: str, batch: int, rng=None) -> np.ndarray:
    """A synthetic input batch in the model's own dtype: `random` (uniform over the range) or `zeros`."""
    shape = [batch] + list(model.input_shape[1:])
    dtype = np.dtype(model.input["dtype"])
    if kind == "zeros":
        return np.zeros(shape, dtype)
    rng = rng or np.random.default_rng(0)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape).astype(dtype)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def prepare_image(ctx: Context, rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 image -> one model input (1, H, W, C) in the model's dtype."""
    x = preprocess(rgb, ctx.prep)
    if ctx.model.input_shape[-1] == 1:
        x = x.mean(axis=-1, keepdims=True)
    return ctx.model.quantize_input(x[None, ...])


def top_k(scores: np.ndarray, k: int) -> list:
    """The k best (index, score), ties in index order: a stable sort's first k, found in O(n)."""
    k = max(1, min(int(k), scores.shape[-1]))
    idx = None
    if k * 8 < scores.shape[-1]:  # per camera frame: partition 1001 scores instead of sorting them
        cand = np.flatnonzero(scores >= np.partition(scores, -k)[-k])
        if cand.size >= k:  # (not with NaN scores: sort those the slow way)
            idx = cand[np.argsort(-scores[cand], kind="stable")][:k]
    if idx is None:
        idx = np.argsort(-scores, kind="stable")[:k]
    return [(int(i), float(scores[i])) for i in idx]


# --------------------------------------------------------------------------- the process and machine


def peak_rss_mb():
    """Peak resident memory of this process (MB), or None where not readable.

    Linux's VmHWM first: ru_maxrss survives fork+exec, so a script started from a big parent (the
    desktop CLI with TensorFlow loaded) would report the parent's peak instead of its own.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except Exception:
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
    except Exception:
        return None


def rss_mb():
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except Exception:
        return None


def _read(path: str):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_temperature_c():
    """CPU temperature from /sys/class/thermal (Raspberry Pi: cpu-thermal), or None."""
    best = None
    zones = sorted(glob.glob("/sys/class/thermal/thermal_zone*"))
    for zone in zones:
        raw = _read(os.path.join(zone, "temp"))
        kind = (_read(os.path.join(zone, "type")) or "").lower()
        try:
            value = int(raw) / 1000.0
        except (TypeError, ValueError):
            continue
        if any(k in kind for k in ("cpu", "x86_pkg", "soc", "coretemp")):
            return value
        best = value if best is None else best
    return best


THROTTLE_BITS = {
    0: "under_voltage",
    1: "frequency_capped",
    2: "throttled",
    3: "soft_temperature_limit",
    16: "under_voltage_occurred",
    17: "frequency_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temperature_limit_occurred",
}


def throttling():
    """Raspberry Pi `vcgencmd get_throttled` flags, or None where the tool is absent."""
    import shutil
    import subprocess

    tool = shutil.which("vcgencmd")
    if not tool:
        return None
    try:
        out = subprocess.run([tool, "get_throttled"], capture_output=True, text=True, timeout=5).stdout
        value = int(out.strip().split("=")[-1], 16)
    except Exception:
        return None
    return {"raw": hex(value), **{name: bool(value >> bit & 1) for bit, name in THROTTLE_BITS.items()}}


def os_name() -> str:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.platform()


def thermal_state() -> dict:
    """Temperature (None where unreadable) and, on a Raspberry Pi, the vcgencmd throttling flags."""
    state = {"temperature_c": cpu_temperature_c()}
    flags = throttling()
    if flags is not None:
        state["throttling"] = flags
    return state


def environment() -> dict:
    """Facts about the machine a figure was measured on."""
    return {
        "cpu": cpu_info(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "os": os_name(),
        "kernel": platform.release(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        **thermal_state(),
    }


# --------------------------------------------------------------------------- probe (run as a script)


def probe(path: str) -> dict:
    """Load, check and invoke a model once on zeros: what the desktop runs in a subprocess to learn
    whether a doubtful model crashes the interpreter before anything else loads it."""
    ctx = open_model(path, labels=False)
    try:
        raw = ctx.model.invoke_raw(make_batch(ctx.model, "zeros", ctx.model.input_shape[0]))
    except Exception as exc:
        raise ModelFailure(f"{path}: invoke failed ({_one_line(exc)})") from None
    if not np.all(np.isfinite(ctx.model.dequantize_output(raw))):
        warn(f"{path}: outputs on a zero input are not finite")
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "probe",
        "model": ctx.model_info(),
        "runtime": ctx.runtime_info(),
        "labels": len(ctx.model.labels or []),  # embedded ones; whether they fit is the caller's concern
        "path": path,
    }


def _probe_main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="edgelib.py", description="Check that .tflite files load and run.")
    p.add_argument("command", choices=["probe"])
    p.add_argument("models", nargs="+", help="one JSON line each, in order (an `error` key when refused)")
    args = p.parse_args(argv)
    first_error = 0
    for path in args.models:
        try:
            doc = probe(path)
        except ScriptError as exc:  # say so and go on: the desktop probes many models in one process
            _stderr_line(f"error: {exc}")
            doc = {"schema_version": SCHEMA_VERSION, "kind": "probe", "path": path, "error": str(exc),
                   "exit_code": exc.exit_code}  # fmt: skip
            first_error = first_error or exc.exit_code
        emit_json(doc)
    return first_error


if __name__ == "__main__":
    sys.exit(run_main(_probe_main))
