"""Shared helpers for the device scripts: interpreter choice, model I/O, preprocessing, CPU facts.

Runs on the device with Python 3.9+, numpy and one interpreter. It must never import edgekit,
TensorFlow (except as the last interpreter fallback), click or rich. The desktop imports this same
file as `edgekit.device_scripts.edgelib`, so host and device run one implementation.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

SCHEMA_VERSION = 1


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the parts below are siblings

from ek_images import (  # noqa: E402, F401
    CROPS,
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_EXTENSIONS,
    MAX_IMAGE_BYTES,
    MAX_INPUT_SIDE,
    ImageReadError,
    bundle_name_problem,
    center_crop,
    check_pixels,
    decode_image,
    default_preprocessing,
    image_dimensions,
    list_images,
    max_image_pixels,
    preprocess,
    preprocessing_problem,
    read_image_file,
    resize_bilinear,
    screen_image,
)
from ek_machine import (  # noqa: E402, F401
    THROTTLE_BITS,
    cpu_info,
    cpu_temperature_c,
    emulation,
    environment,
    int8_expectation,
    int8_speed_note,
    os_name,
    parse_cpuinfo,
    peak_rss_mb,
    rss_mb,
    simd_features,
    thermal_state,
    throttling,
)
from ek_plumbing import (  # noqa: E402, F401
    EXIT_DEPENDENCY,
    EXIT_DEVICE,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_MODEL,
    EXIT_USAGE,
    DependencyFailure,
    DeviceFailure,
    InputFailure,
    ModelFailure,
    ScriptError,
    UsageFailure,
    _stderr_line,
    emit_json,
    json_default,
    progress,
    run_main,
    warn,
)
from ek_runtime import (  # noqa: E402, F401
    DEFAULT_MAX_TENSOR_BYTES,
    RUNTIMES,
    Model,
    NotAClassifier,
    TooLarge,
    declared_tensor_bytes,
    import_interpreter,
    max_tensor_bytes,
    read_embedded,
)

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
