"""Fixtures for the weight-source tests: the shared real model and photos, isolated weight caches."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import REPO

SHARED = REPO.parent / "shared"
SHARED_TFLITE = SHARED / "models" / "mobilenet_v1_0.25_128_quant.tflite"
ANTS_BEES = SHARED / "datasets" / "ants-bees"


@pytest.fixture
def shared_tflite() -> Path:
    if not SHARED_TFLITE.is_file():
        pytest.skip(f"{SHARED_TFLITE} is absent (TF's int8 MobileNet v1 0.25/128; see ../shared/README.md)")
    return SHARED_TFLITE


@pytest.fixture
def ants_bees() -> Path:
    if not (ANTS_BEES / "val").is_dir():
        pytest.skip(f"{ANTS_BEES} is absent (the real ants/bees photos; see ../shared/README.md)")
    return ANTS_BEES


@pytest.fixture
def weights_env(tmp_path, monkeypatch) -> dict:
    """An empty weights cache, no Keras cache, and a download URL on a closed loopback port: any
    attempt to download fails at once, with no network involved."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "EDGEKIT_WEIGHTS_DIR": str(tmp_path / "cache"),
        "KERAS_HOME": str(tmp_path / "keras-home"),
        "EDGEKIT_WEIGHTS_URL": f"http://127.0.0.1:{port}/weights/",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def error_line(stderr: str) -> str:
    """The one error line of a failed command (progress lines aside), with no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error")]
    assert len(errors) == 1, stderr
    return errors[0]
