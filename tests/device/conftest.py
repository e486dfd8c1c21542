"""Fixtures for the device scripts: a real video, a bare third-party-style model, a fresh device venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, cache_lock

SCRIPTS = REPO / "device_scripts"
DEVICE_SCRIPTS = ("profile_latency.py", "eval_images.py", "classify_camera.py")
# every other module in the folder is a library the scripts import (deploy copies every *.py)
DEVICE_LIBRARIES = tuple(sorted(p.name for p in SCRIPTS.glob("*.py") if p.name not in (*DEVICE_SCRIPTS, "__init__.py")))
VENV_PACKAGES = ("numpy", "ai-edge-litert", "opencv-python-headless")
CACHE = Path(os.environ.get("EDGEKIT_TEST_CACHE", Path.home() / ".cache" / "edgekit-tests"))


def int8_model(bundle: Path) -> Path:
    return next(bundle.glob("*_int8.tflite"))


def run_script(
    script: str, *args: str, python: str | None = None, check: bool = True, timeout: float = 300, folder=None
):
    """Run a device script as a plain script, as a device does (from `folder`, default the repo's)."""
    proc = subprocess.run(
        [python or sys.executable, str(Path(folder or SCRIPTS) / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def last_json(stdout: str):
    import json

    lines = [ln for ln in stdout.splitlines() if ln.strip().startswith(("{", "["))]
    assert lines, f"no JSON on stdout: {stdout!r}"
    return json.loads(lines[-1])


def write_video(path: Path, images: list[Path], frames: int, size: int = 64, fps: float = 30.0) -> Path:
    """An MJPG .avi whose frames are the given real images, in turn."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    for i in range(frames):
        img = cv2.imread(str(images[i % len(images)]), cv2.IMREAD_COLOR)
        writer.write(cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR))
    writer.release()
    return path


@pytest.fixture(scope="session")
def copied_scripts(tmp_path_factory) -> Path:
    """The device scripts alone in a folder, as a deploy leaves them on a device (no package around)."""
    folder = tmp_path_factory.mktemp("on-device")
    for name in (*DEVICE_SCRIPTS, *DEVICE_LIBRARIES):
        shutil.copy(SCRIPTS / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def digit_images(digits_dir) -> list[Path]:
    files = sorted(digits_dir.glob("*/*.png"))
    # interleave classes so consecutive frames differ
    by_class = [sorted(d.glob("*.png")) for d in sorted(digits_dir.iterdir()) if d.is_dir()]
    out = [f for group in zip(*by_class, strict=False) for f in group]
    return out or files


@pytest.fixture(scope="session")
def digit_video(tmp_path_factory, digit_images) -> Path:
    """48 frames of real digits, MJPG in .avi, 30 FPS."""
    return write_video(tmp_path_factory.mktemp("video") / "digits.avi", digit_images, 48)


@pytest.fixture(scope="session")
def bare_model(tmp_path_factory, tiny_bundle) -> Path:
    """The bundle's int8 model alone, as a third party would ship it (metadata embedded, no manifest)."""
    dst = tmp_path_factory.mktemp("bare") / "model.tflite"
    shutil.copy(int8_model(tiny_bundle), dst)
    return dst


@pytest.fixture(scope="session")
def tf_models(tmp_path_factory, digits_dir) -> dict:
    """Third-party-style models made with TensorFlow: a uint8-input classifier whose graph fixes the
    batch at 1 (4 outputs, index 0 meant as `background`), a model that is not an image classifier, and
    one that loads but fails when invoked."""
    import tensorflow as tf

    out = tmp_path_factory.mktemp("tfmodels")
    rng = np.random.default_rng(0)

    class Fixed(tf.Module):
        def __init__(self):
            self.w = tf.Variable(rng.normal(size=(3, 3, 3, 4)).astype(np.float32) * 0.3)
            self.d = tf.Variable(rng.normal(size=(5, 4)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32)])
        def __call__(self, x):
            y = tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(x, self.w, 2, "SAME")), axis=[1, 2])
            y = tf.concat([y, tf.ones([1, 1])], axis=1)  # a batch-1 constant: the batch is fixed at 1
            return tf.nn.softmax(tf.matmul(y, self.d))

    m = Fixed()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([m.__call__.get_concrete_function()], m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def rep():
        for _ in range(8):
            yield [rng.uniform(-1, 1, size=(1, 32, 32, 3)).astype(np.float32)]

    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.uint8
    (out / "uint8_fixed.tflite").write_bytes(conv.convert())

    class Tabular(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 10], tf.float32)])
        def __call__(self, x):
            return tf.nn.softmax(x[:, :3] * 2.0)

    t = Tabular()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([t.__call__.get_concrete_function()], t)
    (out / "tabular.tflite").write_bytes(conv.convert())

    class FailsAtInvoke(tf.Module):
        """A gather whose index depends on the input: fine to load, out of bounds when invoked."""

        def __init__(self):
            self.p = tf.Variable(np.ones((10, 3), np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32)])
        def __call__(self, x):
            idx = tf.cast(tf.reduce_max(x), tf.int32) + 100
            return tf.reshape(tf.gather(self.p, idx), [1, 3])

    f = FailsAtInvoke()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.__call__.get_concrete_function()], f)
    (out / "fails_at_invoke.tflite").write_bytes(conv.convert())
    return {name: out / f"{name}.tflite" for name in ("uint8_fixed", "tabular", "fails_at_invoke")}


def _python39() -> str | None:
    """A Python 3.9 (the oldest the device scripts support) when this machine has one that runs."""
    cands = sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.9.*/bin/python3.9"))
    cands += [p for p in (shutil.which("python3.9"),) if p]
    for cand in cands:
        ok = subprocess.run([cand, "-c", "import venv, ensurepip"], capture_output=True).returncode == 0
        if ok:
            return cand
    return None


@pytest.fixture(scope="session")
def device_venv() -> Path:
    """A fresh venv with only numpy + ai-edge-litert + OpenCV headless, built once and cached (CI reruns
    are fast). Python 3.9 when available, proving the scripts run on the oldest supported Python."""
    base = _python39() or getattr(sys, "_base_executable", sys.executable)
    tag = subprocess.run(
        [base, "-c", "import sys; print('%d%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    venv = CACHE / f"device-venv-py{tag}"
    python = venv / "bin" / "python"
    marker = venv / ".edgekit-ok"
    with cache_lock(venv):
        _build_device_venv(base, venv, python, marker)
    return python


def _build_device_venv(base: str, venv: Path, python: Path, marker: Path) -> None:
    if not marker.is_file():
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *VENV_PACKAGES],
            check=True,
            timeout=900,
        )
        marker.write_text(" ".join(VENV_PACKAGES) + "\n")
