"""One short real training run shared by the train/export/eval tests (the expensive part: ~2 min)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_digit_folder

CLASSES = (0, 1, 2)


@pytest.fixture(scope="session")
def train_dir(tmp_path_factory) -> Path:
    """40 real digits per class, plus one truncated PNG that training must skip."""
    root = write_digit_folder(tmp_path_factory.mktemp("train") / "digits", classes=CLASSES, per_class=40)
    good = next((root / "digit_1").glob("*.png")).read_bytes()
    (root / "digit_1" / "zz_truncated.png").write_bytes(good[: len(good) // 2])
    return root


@pytest.fixture(scope="session")
def heldout_dir(tmp_path_factory) -> Path:
    """Other digits of the same classes, never seen in training."""
    return write_digit_folder(
        tmp_path_factory.mktemp("heldout") / "digits", classes=CLASSES, per_class=20, offset=200
    )


@pytest.fixture(scope="session")
def train_run(tmp_path_factory, train_dir) -> tuple[Path, dict]:
    """ResNet-18 at 32 px, 3 epochs (ResNet learns 3 digit classes within a few dozen steps; MobileNet
    at 32 px needs hundreds)."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    proc = run_cli(
        "train", "--model", "resnet18", "--resolution", "32", "--data", str(train_dir), "--epochs", "3",
        "--batch-size", "16", "--seed", "0", "-o", str(out), "--json",
    )  # fmt: skip
    return out, json.loads(proc.stdout)


@pytest.fixture(scope="session")
def run_bundle(tmp_path_factory, train_run) -> tuple[Path, dict]:
    run, _ = train_run
    out = tmp_path_factory.mktemp("bundles") / "digits"
    proc = run_cli(
        "export", "--weights", str(run), "--quantize", "int8", "--max-drop", "25", "-o", str(out), "--json"
    )
    return out, json.loads(proc.stdout)
