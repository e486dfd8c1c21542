"""Fixtures for the hardening tests: tiny hand-built models, a bundle written without TensorFlow, images.

Everything here is made in milliseconds by the tests themselves (no TensorFlow): the models with the
TFLite flatbuffer schema (tests/hardening/tflite_build.py), the bundle with edgekit's own bundle
writer, the images with Pillow. TF's real int8 MobileNet from ../shared is used where it is present.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from tests.hardening.tflite_build import classifier, pack, parse

SHARED_MODEL = REPO.parent / "shared" / "models" / "mobilenet_v1_0.25_128_quant.tflite"
LABELS = ("class_0", "class_1", "class_2")
PREP = {"size": [16, 16], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "color": "RGB", "resize": "bilinear"}


def shared_model() -> Path:
    if not SHARED_MODEL.is_file():
        pytest.skip(f"{SHARED_MODEL} is absent (TF's int8 MobileNet lives in ../shared)")
    return SHARED_MODEL


def reshape_crash(data: bytes) -> bytes:
    """The tiny model with its RESHAPE's shape input set to -1: SIGSEGV in the TFLite interpreter."""
    m = parse(data)
    ops = m.subgraphs[0].operators
    reshape = next(o for o in ops if m.operatorCodes[o.opcodeIndex].builtinCode == 22)
    reshape.inputs[1] = -1
    return pack(m)


def issue_repro(data: bytes) -> bytes:
    """The issue's repro: operator 11's second input index set to -1 (a depthwise conv's weights)."""
    m = parse(data)
    m.subgraphs[0].operators[11].inputs[1] = -1
    return pack(m)


def write_images(root: Path, classes=LABELS, per_class: int = 3, size: int = 24, seed: int = 0) -> Path:
    """DIR/<class>/*.png: smooth colour blobs, a different mean colour per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.zeros((size, size, 3), np.float64)
            base[..., c % 3] = 160
            img = np.clip(base + rng.normal(0, 30, size=(size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i}.png")
    return root


def make_bundle(out: Path, model: bytes | None = None, **manifest_changes) -> Path:
    """A bundle written by edgekit's bundle writer around a tiny int8 model (no float model, no TF)."""
    from edgekit.bundle.writer import write_bundle

    data = model if model is not None else classifier()
    manifest = {
        "schema_version": 1,
        "name": "tiny",
        "labels_file": "labels.txt",
        "num_classes": len(LABELS),
        "preprocessing": dict(PREP),
        "output_kind": "logits",
        "models": [{"file": "tiny_int8.tflite", "precision": "int8", "size_bytes": len(data)}],
    }
    manifest.update(manifest_changes)
    entries = [{"file": "tiny_int8.tflite", "_data": data}]
    write_bundle(out, manifest, entries, None, LABELS)
    return out


def edit_manifest(bundle: Path, change) -> None:
    """Apply `change(manifest) -> manifest` to a bundle's manifest.json (checksums left as they are)."""
    p = bundle / "manifest.json"
    p.write_text(json.dumps(change(json.loads(p.read_text()))))


def run_py(code: str, *args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Python code in a fresh process: a crash there fails the test instead of killing pytest."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Exit `code` (never a signal), no traceback, and one `error:` line that says what is wrong."""
    err = proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}:\n{proc.stdout}\n{err}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("tiny") / "tiny_int8.tflite"
    p.write_bytes(classifier())
    return p


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture()
def bundle(tmp_path) -> Path:
    return make_bundle(tmp_path / "bundle")
