"""The onnx-tf back end (the original ONNX backend for TensorFlow, unmaintained since 2022).

onnx-tf 1.10.0 imports `onnx.mapping`, removed in onnx 1.14, and with an older onnx it goes on to need
tensorflow-probability, tf-keras and tensorflow-addons, the last of which fails with Keras 3
(`No module named 'keras.src.engine'`): it needs TensorFlow <= 2.15. It is therefore only probed, in a
subprocess so a half-working install can never break this process, and used when the probe passes.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _v(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def status() -> dict:
    env = f"TensorFlow {_v('tensorflow-cpu') if _v('tensorflow') == 'not installed' else _v('tensorflow')}, onnx {_v('onnx')}"
    installed = _v("onnx-tf")
    if installed == "not installed":
        return {
            "available": False,
            "reason": (
                f"onnx-tf is not installed; its last release 1.10.0 cannot run here ({env}): "
                "`cannot import name 'mapping' from 'onnx'` (removed in onnx 1.14), and its "
                "tensorflow-addons dependency needs TensorFlow <= 2.15"
            ),
        }
    proc = subprocess.run(
        [sys.executable, "-c", "import onnx_tf.backend"], capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or ["(no output)"]
        return {
            "available": False,
            "reason": f"onnx-tf {installed} cannot import with {env}: {last[0][:200]}",
        }
    return {"available": True, "reason": f"onnx-tf {installed} with {env}"}


def convert_to_saved_model(onnx_path: str | Path, out_dir: str | Path) -> None:
    """ONNX -> TensorFlow SavedModel with onnx-tf (only called when status() is available)."""
    code = (
        "import sys, onnx; from onnx_tf.backend import prepare; "
        "prepare(onnx.load(sys.argv[1])).export_graph(sys.argv[2])"
    )
    with tempfile.TemporaryDirectory():
        proc = subprocess.run(
            [sys.executable, "-c", code, str(onnx_path), str(out_dir)], capture_output=True, text=True
        )
    if proc.returncode != 0:
        last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or ["(no output)"]
        raise RuntimeError(f"onnx-tf failed: {last[0][:300]}")
