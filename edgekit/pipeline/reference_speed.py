"""The float reference on the chosen Keras backend, and the host .tflite, each with its speed.

tensorflow runs in this process (the model edgekit already loaded); jax and torch run
edgekit.pipeline.keras_reference in a subprocess with KERAS_BACKEND set, since Keras picks its
backend once, at import. The .keras file is backend-neutral, so all three load the same model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgekit.device_scripts import edgelib
from edgekit.errors import DependencyError, EdgekitError, InputDataError, ModelFileError, UsageError
from edgekit.pipeline import keras_reference as kr
from edgekit.pipeline.keras_reference import BACKENDS, PRECISIONS, Timing

__all__ = ["BACKENDS", "PRECISIONS", "Timing", "check_backend", "host_tflite_speed", "reference_outputs"]

SUBPROCESS_TIMEOUT_S = 1800
_EXIT = {kr.EXIT_USAGE: UsageError, kr.EXIT_INPUT: InputDataError, kr.EXIT_MODEL: ModelFileError,
         kr.EXIT_DEPENDENCY: DependencyError}  # fmt: skip
_INSTALL = {
    "jax": "pip install 'jax[cpu]' (or 'jax[cuda12]' for an NVIDIA GPU)",
    "torch": "pip install torch (the CPU or CUDA wheel from pytorch.org)",
    "tensorflow": "pip install 'edgekit[tf]'",
}


def check_backend(backend: str, precision: str = "float32") -> None:
    """One line and exit 8 when the backend's package is missing; exit 2 for an unknown name."""
    if backend not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}; received {backend!r}")
    if precision not in PRECISIONS:
        raise UsageError(f"--reference-precision must be one of {', '.join(PRECISIONS)}; received {precision!r}")
    why = kr.backend_missing(backend)
    if why:
        raise DependencyError(why, hint=_INSTALL[backend])


def reference_outputs(
    keras_path: Path, keras_model, x: np.ndarray, *, backend: str, precision: str, timing: Timing
) -> tuple[np.ndarray, dict]:
    """(outputs on every image, figures: device, backend, versions, precision, latency, throughput)."""
    if backend == "tensorflow":
        return kr.run_loaded(keras_model, x, backend, precision, timing)
    return _in_subprocess(keras_path, x, backend, precision, timing)


def _in_subprocess(keras_path: Path, x: np.ndarray, backend: str, precision: str, timing: Timing):
    with tempfile.TemporaryDirectory(prefix="edgekit-ref-") as tmp:
        inputs, out = Path(tmp) / "x.npz", Path(tmp) / "outputs.npz"
        np.savez(inputs, x=x.astype(np.float32))
        argv = [
            sys.executable, "-m", kr.__name__, "--model", str(keras_path), "--inputs", str(inputs),
            "--out", str(out), "--precision", precision, "--batch", str(timing.batch),
            "--runs", str(timing.runs), "--min-seconds", str(timing.min_seconds),
        ]  # fmt: skip
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=SUBPROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise EdgekitError(f"the {backend} reference took over {SUBPROCESS_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            errors = [ln[7:] for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            text = errors[-1] if errors else (lines[-1] if lines else f"exit {proc.returncode}")
            cls = _EXIT.get(proc.returncode, EdgekitError)
            raise cls(f"Keras on {backend}: {text}", hint=_INSTALL[backend] if cls is DependencyError else None)
        doc = next(
            (json.loads(ln) for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")), None
        )
        if doc is None:
            raise EdgekitError(f"Keras on {backend} printed no result")
        with np.load(out) as z:
            outputs = np.asarray(z["outputs"], np.float32)
    doc.pop("schema_version", None)
    doc.pop("model", None)
    doc.pop("n", None)
    return outputs, doc


def host_tflite_speed(content: bytes, model: edgelib.Model, x: np.ndarray, timing: Timing) -> dict:
    """The host .tflite timed the same way: batch-1 latency per image, then throughput at the batch
    (a second interpreter resized to it; a model that cannot take it says so)."""
    threads = model.threads
    single = model.quantize_input(x[: min(len(x), 16)])
    singles = [single[i : i + 1] for i in range(len(single))]
    model.resize_batch(1)
    lat = kr.time_calls(model.invoke_raw, singles, timing.warmup, timing.runs, timing.min_seconds, timing.max_runs)
    out = {
        "latency_ms": {**kr.percentiles_ms(lat), "batch": 1, "runs": len(lat), "warmup": timing.warmup},
        "threads": threads,
        "device": {"type": "CPU", "name": edgelib.cpu_info()["model"], "cores": os.cpu_count() or 1},
    }
    try:
        big_model = edgelib.Model(content, threads=threads)
        big_model.resize_batch(timing.batch)
        big = big_model.quantize_input(np.resize(x, (timing.batch, *x.shape[1:])))
        per = kr.time_calls(big_model.invoke_raw, [big], 1, timing.batch_runs, timing.min_seconds, timing.max_runs)
        total = float(np.sum(per))
        out["throughput"] = {
            "batch": timing.batch,
            "images_per_s": timing.batch * len(per) / total if total > 0 else None,
            "latency_ms": kr.percentiles_ms(per),
            "runs": len(per),
        }
    except (RuntimeError, ValueError) as exc:  # a fixed-batch model
        out["throughput"] = {"batch": timing.batch, "images_per_s": None, "error": str(exc).splitlines()[0][:200]}
    return out
