"""Shared helpers for the device scripts: interpreter choice, model I/O, preprocessing, CPU facts.

Runs on the device with Python 3.9+, numpy and one interpreter. It must never import edgekit,
TensorFlow (except as the last interpreter fallback), click or rich. The desktop imports this same
file as `edgekit.device_scripts.edgelib`, so host and device run one implementation.
"""

from __future__ import annotations

import glob
import io
import json
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
    emulated = emulation(machine, flags)
    if emulated:  # shown wherever the CPU is (CLI, database, reports): the timings are not a device's
        model = f"{model} [emulated {emulated}: latency not meaningful]"
    return {
        "model": model,
        "machine": machine,
        "cores": os.cpu_count() or 1,
        "simd": simd,
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


def read_label_file(path: str) -> list:
    try:
        with open(path, encoding="utf-8") as f:
            labels = [ln.strip() for ln in f if ln.strip()]
    except OSError as exc:
        raise InputFailure(f"cannot read labels file {path}: {exc.strerror or exc}") from None
    if not labels:
        raise InputFailure(f"labels file {path} is empty: write one label per line")
    return labels


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
    for entry in manifest.get("models", []):
        if entry.get("file") == os.path.basename(model_path):
            return manifest, entry
    return None, None


def open_model(path: str, threads=None, labels_path=None, runtime=None, xnnpack: bool = True) -> Context:
    """Check, load and describe an image classifier; raises ModelFailure/InputFailure with one line."""
    if not os.path.isfile(path):
        raise ModelFailure(f"model file {path} does not exist")
    with open(path, "rb") as f:
        content = f.read()
    check_tflite_bytes(content, path)
    try:
        model = Model(content, threads=threads, runtime=runtime, xnnpack=xnnpack)
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
        prep, source = dict(manifest["preprocessing"]), "manifest"
        output_kind = manifest.get("output_kind")
        precision = entry.get("precision")
        labels = None
        lf = os.path.join(os.path.dirname(os.path.abspath(path)), manifest.get("labels_file") or "labels.txt")
        if os.path.isfile(lf):
            labels = read_label_file(lf)
    else:
        prep = default_preprocessing(model)
        source = "embedded" if meta.get("preprocessing") else "guessed"
        output_kind = meta.get("output_kind")
        precision = meta.get("precision")
        labels = None
    if labels is None:
        labels = model.labels
    if labels_path:
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
    if len(labels) == n:
        return labels
    if len(labels) == n + 1:
        # A label map with a background entry the model has no output for (TF object-detection style).
        warn(f"{where} has {len(labels)} entries for {n} outputs: dropping the first ({labels[0]!r})")
        return labels[1:]
    raise InputFailure(
        f"{where} has {len(labels)} labels but the model has {n} outputs: pass the matching labels file"
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
    ctx = open_model(path)
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
        "labels": len(ctx.labels),
    }


def _probe_main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="edgelib.py", description="Check that a .tflite loads and runs.")
    p.add_argument("command", choices=["probe"])
    p.add_argument("model")
    args = p.parse_args(argv)
    emit_json(probe(args.model))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(_probe_main))
