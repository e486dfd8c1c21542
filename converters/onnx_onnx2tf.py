"""The onnx2tf back end, run from its own virtual environment.

onnx2tf 1.29.24 is the last release for Python 3.11 (2.x needs Python >= 3.12) and pins TensorFlow
2.19, numpy 1.26, onnx 1.19, protobuf 4 and full opencv-python: installed beside edgekit it would
downgrade the main environment. So it lives in a venv of its own under the cache folder (about 2.6 GB,
about 3 minutes to create), made only when asked (`edgekit convert --install-backend onnx2tf`), and
is called as a subprocess. Offline, onnx2tf tries to download a calibration sample from GitHub; a
file of that name in its working directory stops that (edgekit's own calibration data is passed with
-cind anyway). It shells out to `onnxsim`, so the venv's bin folder goes first on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

VERSION = "1.29.24"
_READY = ".edgekit-ready"
_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
# onnx2tf output file suffix for each edgekit precision (int8 I/O types chosen by -iqd/-oqd).
_SUFFIX = {
    "float32": "float32",
    "float16": "float16",
    "dynamic": "dynamic_range_quant",
    "int8": "full_integer_quant",
}


def env_dir() -> Path:
    """Where the venv lives: $EDGEKIT_ONNX2TF_ENV, else the user cache folder."""
    if os.environ.get("EDGEKIT_ONNX2TF_ENV"):
        return Path(os.environ["EDGEKIT_ONNX2TF_ENV"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgekit" / f"onnx2tf-{VERSION}"


def _bin(name: str, root: Path | None = None) -> Path:
    return (root or env_dir()) / "bin" / name


def status() -> dict:
    root = env_dir()
    if not (root / _READY).exists() or not _bin("onnx2tf", root).exists():
        return {
            "available": False,
            "reason": (
                f"onnx2tf {VERSION} is not installed in its isolated environment {root} "
                "(create it with `edgekit convert --install-backend onnx2tf`: ~2.6 GB, ~3 min; it pins "
                "TensorFlow 2.19 / numpy 1.26 / onnx 1.19 / protobuf 4, so it never goes in the main venv)"
            ),
            "path": str(root),
        }
    return {"available": True, "reason": f"onnx2tf {VERSION} in {root}", "path": str(root)}


def install(progress=lambda _m: None, python: str | None = None) -> Path:
    """Create the isolated venv with onnx2tf (explicit user request only). Idempotent.

    A marker file is written last, so an interrupted install is detected and redone from scratch.
    """
    root = env_dir()
    if (root / _READY).exists():
        return root
    py = python or shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}") or sys.executable
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    progress(f"creating venv {root}")
    _check([py, "-m", "venv", str(root)], "venv creation")
    progress(f"pip install onnx2tf=={VERSION} (downloads TensorFlow 2.19)")
    _check([str(root / "bin" / "python"), "-m", "pip", "install", "-q", f"onnx2tf=={VERSION}"], "pip install")
    (root / _READY).write_text(VERSION + "\n", encoding="utf-8")
    return root


def _check(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"onnx2tf environment: {what} failed: {tail[0][:300]}")


def convert(
    onnx_path: str | Path,
    precisions,
    *,
    calibration: np.ndarray,
    input_name: str,
    io_type: str = "int8",
    timeout: float = 1800,
) -> dict[str, bytes]:
    """Run onnx2tf on `onnx_path`; returns {precision: flatbuffer}.

    `calibration` is NHWC float32, already normalised (mean 0 / std 1 are passed to onnx2tf).
    """
    st = status()
    if not st["available"]:
        raise FileNotFoundError(st["reason"])
    with tempfile.TemporaryDirectory(prefix="edgekit-onnx2tf-") as tmp:
        work = Path(tmp)
        np.save(work / _SAMPLE, np.zeros((1, 8, 8, 3), np.float32))  # stops the GitHub download
        np.save(work / "calib.npy", np.ascontiguousarray(calibration, dtype=np.float32))
        c = calibration.shape[-1]
        zeros, ones = "[[[[" + ",".join(["0"] * c) + "]]]]", "[[[[" + ",".join(["1"] * c) + "]]]]"
        cmd = [str(_bin("onnx2tf")), "-i", str(Path(onnx_path).resolve()), "-o", "out", "-b", "1"]
        if any(p in ("int8", "dynamic") for p in precisions):
            cmd += ["-oiqt", "-cind", input_name, "calib.npy", zeros, ones]
            cmd += ["-iqd", io_type, "-oqd", io_type]
        env = {**os.environ, "PATH": f"{_bin('')}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("PYTHONPATH", None)
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=timeout)
        stem = Path(onnx_path).stem
        out: dict[str, bytes] = {}
        for p in precisions:
            f = work / "out" / f"{stem}_{_SUFFIX[p]}.tflite"
            if not f.is_file():
                tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()][-3:]
                raise RuntimeError(
                    f"onnx2tf (exit {proc.returncode}) wrote no {p} model: {' | '.join(tail)[:400]}"
                )
            out[p] = f.read_bytes()
        return out
