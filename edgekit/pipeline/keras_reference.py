"""The float reference on any Keras 3 backend, timed: in edgekit's process or as a script.

Keras picks its backend once, at import (`KERAS_BACKEND`), so `edgekit eval --backend tensorflow`
runs the reference in edgekit's own process while jax and torch run this file in a subprocess with
`KERAS_BACKEND` set. As a script it needs only numpy, keras and the backend: `scripts/gpu_reference.sh`
runs it on a GPU machine that has neither TensorFlow nor edgekit installed.

    KERAS_BACKEND=torch python keras_reference.py --model float_model.keras --inputs x.npz --out y.npz

The reference is float32 unless asked otherwise: TF32 tensor-core math (on by default for convolutions
in TensorFlow, PyTorch's cuDNN and JAX on Ampere and later) is turned off, and a mixed-precision run
is labelled with its policy wherever its figures go.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
SCHEMA_VERSION = 1
# Exit codes, the numbers of edgekit.errors.ExitCode (this file imports nothing of edgekit).
EXIT_USAGE, EXIT_INPUT, EXIT_MODEL, EXIT_VERIFY, EXIT_DEPENDENCY = 2, 3, 4, 5, 8
# Float32 outputs of one model on two backends or devices (logits or probabilities): kernels sum in
# other orders, so values differ by up to ~2e-4 on the tiny test model; tests/train/test_reference_speed.py
# pins this tolerance and top-1 agreement wherever the top-2 margin exceeds it.
OUTPUT_ATOL = 1e-3


class ReferenceFailure(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Timing:
    """How the reference (and the host .tflite) are timed: batch-1 latency, then throughput."""

    warmup: int = 3  # untimed calls first (tracing, compilation, cuDNN autotuning)
    runs: int = 20  # at least this many timed batch-1 calls ...
    min_seconds: float = 0.5  # ... and for at least this long
    max_runs: int = 2000
    batch: int = 64  # the throughput batch
    batch_runs: int = 3  # timed calls at that batch, at least (and min_seconds)


def backend_missing(backend: str) -> str | None:
    """Why a Keras backend cannot run here (its package is not installed), or None."""
    if backend not in BACKENDS:
        return f"unknown Keras backend {backend!r}; choose one of {', '.join(BACKENDS)}"
    module = "tensorflow" if backend == "tensorflow" else backend
    if importlib.util.find_spec(module) is None:
        return f"the {backend} backend is not installed (no module named {module!r})"
    if importlib.util.find_spec("keras") is None:
        return "keras is not installed (no module named 'keras')"
    return None


# --------------------------------------------------------------------------- where it runs


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip().lower() in ("model name", "hardware", "cpu model") and val.strip():
                    return val.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(backend: str) -> dict:
    """{"type": "GPU", "name": ...} for the accelerator the backend computes on, else the CPU."""
    gpu = None
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            gpu = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    elif backend == "jax":
        import jax

        dev = jax.devices()[0]
        if dev.platform != "cpu":
            gpu = getattr(dev, "device_kind", None) or str(dev)
    if gpu:
        return {"type": "GPU", "name": str(gpu)}
    return {"type": "CPU", "name": cpu_model(), "cores": os.cpu_count() or 1}


def versions(backend: str) -> dict:
    import keras

    module = sys.modules.get(backend) or __import__(backend)
    out = {"keras": keras.__version__, backend: getattr(module, "__version__", "?"), "numpy": np.__version__}
    if backend == "torch":
        import torch

        out["cuda"] = torch.version.cuda
    return out


def strict_float32(backend: str) -> None:
    """TF32 off: on Ampere+ GPUs the backends default to 10-bit-mantissa matmuls and convolutions."""
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")


# --------------------------------------------------------------------------- the model


def _register_edgekit_layers() -> None:
    """edgekit's custom layers (ResNet option-A shortcut), when edgekit is importable."""
    try:
        import edgekit.models.layers  # noqa: F401 - registers them for deserialisation
    except ImportError:
        pass


def load(path: str, precision: str = "float32"):
    import keras

    _register_edgekit_layers()
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise ReferenceFailure(
            f"{path} cannot be loaded as a Keras model ({exc.__class__.__name__}: {str(exc)[:200]})", EXIT_MODEL
        ) from None
    return model if precision == "float32" else with_policy(model, precision)


def with_policy(model, precision: str):
    """The same model and weights under a mixed-precision dtype policy (not the reference)."""
    import keras

    if precision not in PRECISIONS:
        raise ReferenceFailure(f"precision must be one of {', '.join(PRECISIONS)}; received {precision!r}", EXIT_USAGE)

    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": precision})

    new = keras.models.clone_model(model, clone_function=clone)
    new.set_weights(model.get_weights())
    return new


def predict(model, x: np.ndarray, batch: int = 64) -> np.ndarray:
    outs = [np.asarray(model.predict_on_batch(x[i : i + batch]), np.float32) for i in range(0, len(x), batch)]
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def percentiles_ms(samples_s: list[float]) -> dict:
    a = np.asarray(samples_s, np.float64) * 1000.0
    if a.size == 0:
        return {}
    return {k: float(np.percentile(a, q)) for k, q in (("p50", 50), ("p90", 90), ("p99", 99))} | {
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
    }


def time_calls(fn, inputs: list, warmup: int, runs: int, min_seconds: float, max_runs: int) -> list[float]:
    """Seconds per call of fn(inputs[i % n]) after `warmup` untimed calls; fn must return on the host
    (numpy), so asynchronous GPU work is inside the time."""
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < max_runs and (len(samples) < runs or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        fn(inputs[len(samples) % len(inputs)])
        samples.append(time.perf_counter() - t0)
    return samples


def speed(fn, x: np.ndarray, timing: Timing, batch_fn=None) -> dict:
    """Batch-1 latency per image (p50/p90 after warm-up) and throughput at `timing.batch`.

    `fn` takes one image batch of 1; `batch_fn` (default: fn) a batch of `timing.batch`."""
    singles = [x[i : i + 1] for i in range(min(len(x), 16))]
    lat = time_calls(fn, singles, timing.warmup, timing.runs, timing.min_seconds, timing.max_runs)
    big = np.resize(x, (timing.batch, *x.shape[1:])).astype(x.dtype)  # eval images repeated to fill it
    per_batch = time_calls(batch_fn or fn, [big], 1, timing.batch_runs, timing.min_seconds, timing.max_runs)
    total = float(np.sum(per_batch))
    return {
        "latency_ms": {**percentiles_ms(lat), "batch": 1, "runs": len(lat), "warmup": timing.warmup},
        "throughput": {
            "batch": timing.batch,
            "images_per_s": timing.batch * len(per_batch) / total if total > 0 else None,
            "latency_ms": percentiles_ms(per_batch),  # per batch
            "runs": len(per_batch),
        },
    }


def run_loaded(model, x: np.ndarray, backend: str, precision: str, timing: Timing) -> tuple[np.ndarray, dict]:
    """Outputs on every image and the reference's figures (device, backend, versions, speed)."""
    if precision == "float32":
        strict_float32(backend)
    outputs = predict(model, x, timing.batch)
    figures = {
        "device": device_info(backend),
        "backend": backend,
        "precision": precision,
        "versions": versions(backend),
        **speed(model.predict_on_batch, x.astype(np.float32), timing),
    }
    if precision != "float32":
        figures["precision_note"] = f"{precision}: mixed precision, not the float32 reference"
    return outputs, figures


# --------------------------------------------------------------------------- as a script


def _args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Time a .keras model on the Keras backend KERAS_BACKEND names.")
    p.add_argument("--model", required=True, help="a .keras file")
    p.add_argument("--inputs", required=True, help=".npz with x: preprocessed float32 NHWC images")
    p.add_argument("--out", default=None, help=".npz to write the outputs to")
    p.add_argument("--precision", default="float32", choices=PRECISIONS)
    p.add_argument("--batch", type=int, default=Timing.batch, help="throughput batch")
    p.add_argument("--runs", type=int, default=Timing.runs)
    p.add_argument("--min-seconds", type=float, default=Timing.min_seconds)
    p.add_argument("--expect", default=None, help=".npz with the outputs another backend gave (CPU reference)")
    p.add_argument("--atol", type=float, default=OUTPUT_ATOL, help="largest |output difference| accepted")
    return p.parse_args(argv)


def check(outputs: np.ndarray, expected_path: str, atol: float) -> dict:
    """These outputs against another run's (the CPU reference): max |difference| and top-1 agreement."""
    try:
        with np.load(expected_path) as z:
            expected = np.asarray(z["outputs"], np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ReferenceFailure(f"--expect {expected_path}: not an .npz with outputs ({exc})", EXIT_INPUT) from None
    if expected.shape != outputs.shape:
        raise ReferenceFailure(f"--expect has shape {expected.shape}; these outputs {outputs.shape}", EXIT_INPUT)
    diff = float(np.abs(outputs.astype(np.float64) - expected).max()) if outputs.size else 0.0
    agree = float(np.mean(outputs.argmax(-1) == expected.argmax(-1))) if len(outputs) else 1.0
    return {"against": os.path.abspath(expected_path), "max_abs_diff": diff, "top1_agreement": agree,
            "atol": atol, "ok": bool(diff <= atol)}  # fmt: skip


def run(argv=None) -> dict:
    a = _args(argv)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    why = backend_missing(backend)
    if why:
        raise ReferenceFailure(why, EXIT_DEPENDENCY if backend in BACKENDS else EXIT_USAGE)
    try:
        with np.load(a.inputs) as z:
            x = np.asarray(z["x"], np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ReferenceFailure(f"--inputs {a.inputs}: not an .npz with x ({exc})", EXIT_INPUT) from None
    try:
        import keras
    except ImportError as exc:
        raise ReferenceFailure(f"Keras cannot use the {backend} backend ({exc})", EXIT_DEPENDENCY) from None
    if keras.backend.backend() != backend:  # keras was imported before KERAS_BACKEND was read
        raise ReferenceFailure(f"keras runs on {keras.backend.backend()}, not {backend}", EXIT_USAGE)
    model = load(a.model, a.precision)
    timing = Timing(batch=a.batch, runs=a.runs, min_seconds=a.min_seconds)
    outputs, figures = run_loaded(model, x, backend, a.precision, timing)
    if a.out:
        np.savez(a.out, outputs=outputs)
    doc = {"schema_version": SCHEMA_VERSION, "model": os.path.abspath(a.model), "n": int(len(x)), **figures}
    if a.expect:
        doc["check"] = check(outputs, a.expect, a.atol)
    return doc


def main(argv=None) -> int:
    try:
        doc = run(argv)
    except ReferenceFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    print(json.dumps(doc))
    if doc.get("check") and not doc["check"]["ok"]:
        c = doc["check"]
        print(f"error: outputs differ from {c['against']} by up to {c['max_abs_diff']:.3g} (> {c['atol']:g})",
              file=sys.stderr)  # fmt: skip
        return EXIT_VERIFY
    return 0


if __name__ == "__main__":
    sys.exit(main())
