"""Transfer learning (`edgekit train --weights`): two real stages on tiny images, killed and resumed.

The "pretrained" source is a zoo MobileNet saved as a run folder that records ImageNet mean/std (as a
torchvision source does), so the tests can tell its normalisation from the default [-1, 1]; its BN
statistics come from images, so a BN layer left in training mode would visibly move them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run_cli, write_digit_folder

pytestmark = [pytest.mark.tf, pytest.mark.slow]

IMAGENET_PREP = {"size": [32, 32], "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
                 "color": "RGB", "resize": "bilinear"}  # fmt: skip
SOURCE_CLASSES = 5
MOBILENET_WEIGHTED_LAYERS = 27  # conv1 + 13 × (depthwise, pointwise)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """A 5-class MobileNet α 0.25 at 32 px as a run folder, BN statistics set from real digits."""
    from edgekit.config import ModelConfig
    from edgekit.data.datasets import decode, open_dataset
    from edgekit.models import build_model
    from edgekit.models.batchnorm import recalibrate_batchnorm

    digits = write_digit_folder(tmp_path_factory.mktemp("bn") / "d", classes=(5, 6, 7), per_class=12)
    root = tmp_path_factory.mktemp("source") / "pretrained"
    root.mkdir()
    cfg = ModelConfig("mobilenet_v1", classes=SOURCE_CLASSES, resolution=32, alpha=0.25)
    model = build_model(cfg, seed=3)
    recalibrate_batchnorm(model, decode(open_dataset(digits), IMAGENET_PREP).x)
    model.save(root / "model.keras")
    (root / "labels.txt").write_text("".join(f"c{i}\n" for i in range(SOURCE_CLASSES)))
    run = {"schema_version": 1, "kind": "edgekit-run", "model": cfg.to_dict(), "preprocessing": IMAGENET_PREP,
           "num_classes": SOURCE_CLASSES, "output_kind": "logits"}  # fmt: skip
    (root / "run.json").write_text(json.dumps(run))
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_digit_folder(tmp_path_factory.mktemp("data") / "digits", classes=(0, 1), per_class=16)


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory, source_run, data_dir) -> tuple[Path, dict, str]:
    """Two stages (2 + 2 epochs; stage 2 as the defaults have it: top 50 % unfrozen at lr × 0.03), killed as
    stage 2 begins, then --resume'd."""
    out = tmp_path_factory.mktemp("runs") / "transfer"
    args = [sys.executable, "-m", "edgekit", "train", "--weights", str(source_run), "--data", str(data_dir),
            "--val-split", "0.25", "--epochs", "2", "--fine-tune-epochs", "2",
            "--patience", "0", "--batch-size", "8", "--seed", "0", "-o", str(out)]  # fmt: skip
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=os.environ)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "stage 2 epoch 1/2 training" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=600)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert not (out / "run.json").exists()
    resumed = run_cli("train", "--resume", "-o", str(out), "--json")
    return out, json.loads(resumed.stdout), resumed.stderr


def _layer_changes(model, reference) -> tuple[set[str], set[str]]:
    """(changed, unchanged) names of the backbone layers with weights (moving statistics included)."""
    changed, same = set(), set()
    for layer in model.layers:
        if not layer.weights or layer.name in ("logits", "head_dropout"):
            continue
        ref = reference.get_layer(layer.name)
        equal = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(layer.weights, ref.weights, strict=True))
        (same if equal else changed).add(layer.name)
    return changed, same


def test_stage1_trains_a_new_head_on_a_frozen_backbone(transfer_run, source_run):
    from edgekit.bundle.keras_model import load_keras

    out, run, _ = transfer_run
    source = load_keras(source_run / "model.keras")
    stage1 = load_keras(out / "checkpoints" / "stage1.keras")
    changed, same = _layer_changes(stage1, source)
    # every backbone weight, BN moving mean/variance included, is the source's own
    assert changed == set() and len(same) == 2 * MOBILENET_WEIGHTED_LAYERS
    assert source.get_layer("logits").kernel.shape[-1] == SOURCE_CLASSES
    assert stage1.get_layer("logits").kernel.shape[-1] == 2 == run["num_classes"] == run["model"]["classes"]
    assert not np.allclose(np.asarray(stage1.get_layer("logits").kernel)[:, :2],
                           np.asarray(source.get_layer("logits").kernel)[:, :2])  # fmt: skip
    s1 = run["transfer"]["stages"][0]
    assert s1["stage"] == 1 and s1["unfrozen_layers"] == [] and s1["epochs_run"] == 2
    assert s1["trainable_params"] == 256 * 2 + 2  # the head alone: 256 features × 2 classes + bias


def test_stage2_unfreezes_the_top_layers_and_keeps_batchnorm_frozen(transfer_run, source_run):
    from edgekit.bundle.keras_model import load_keras

    out, run, _ = transfer_run
    source = load_keras(source_run / "model.keras")
    last = load_keras(out / "checkpoints" / "last.keras")  # the last stage-2 epoch
    s2 = run["transfer"]["stages"][1]
    unfrozen = set(s2["unfrozen_layers"])
    assert len(unfrozen) == round(MOBILENET_WEIGHTED_LAYERS * 0.5) and "conv_pw_13" in unfrozen
    assert "conv1" not in unfrozen and not any(n.endswith("_bn") for n in unfrozen)
    changed, same = _layer_changes(last, source)
    assert changed == unfrozen  # exactly the unfrozen convolutions moved
    bn = {n for n in changed | same if n.endswith("_bn")}
    assert len(bn) == MOBILENET_WEIGHTED_LAYERS and bn <= same  # BN statistics and γ/β: the source's


def test_killed_run_resumes_into_stage_2_and_reports_each_stage(transfer_run):
    out, run, stderr = transfer_run
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3, 4] and history["stage"] == [1, 1, 2, 2]
    assert "resuming" in stderr and "stage 2 epoch 2/2" in stderr
    stages = run["transfer"]["stages"]
    assert [(s["stage"], s["epochs_run"]) for s in stages] == [(1, 2), (2, 2)]
    assert all(0 <= s["best_val_top1"] <= 1 and s["seconds"] > 0 for s in stages)
    assert run["transfer"]["kept_stage"] in (1, 2) and run["training"]["epochs_run"] == 4
    assert run["evaluation"]["n"] == run["data"]["val_images"] == 8
    assert run["config"]["weights"] and run["config"]["fine_tune"] == "top-50%"  # the default, measured best
    assert [s["lr"] for s in stages] == pytest.approx([1e-2, 3e-4])  # --lr with --weights, and × 0.03


def test_normalisation_of_the_weights_is_recorded_and_exported(transfer_run, tmp_path):
    from edgekit.device_scripts import edgelib

    out, run, _ = transfer_run
    assert run["preprocessing"] == IMAGENET_PREP
    assert run["weights"]["kind"] == "run" and run["transfer"]["source"]["spec"]
    bundle = tmp_path / "bundle"
    man = json.loads(run_cli("export", "--weights", str(out), "-o", str(bundle), "--json").stdout)
    assert man["preprocessing"] == IMAGENET_PREP  # the device scripts normalise from this block
    (entry,) = man["models"]
    embedded = edgelib.Model((bundle / entry["file"]).read_bytes()).meta
    assert embedded["preprocessing"] == IMAGENET_PREP and embedded["num_classes"] == 2
    assert man["source"]["pretrained"]["sha256"] == run["weights"]["sha256"]  # provenance travels on
    # the export measured the float model on the run's validation images with the same normalisation
    assert entry["accuracy"]["float_top1"] == pytest.approx(run["evaluation"]["top1"], abs=1e-4)


def test_transfer_errors_are_one_line_and_write_nothing(tmp_path, data_dir, source_run):
    proc = run_cli("train", "--weights", "x", "--fine-tune", "top-150%", "--data", str(data_dir),
                   "-o", str(tmp_path / "a"), check=False)  # fmt: skip
    assert proc.returncode == 2 and "--fine-tune must be none, top-N%" in proc.stderr
    proc = run_cli("train", "--fine-tune", "all", "--data", str(data_dir), "-o", str(tmp_path / "b"), check=False)
    assert proc.returncode == 2 and "--fine-tune needs --weights" in proc.stderr
    # weights of another width than asked for: named in one line, before any photo is decoded
    proc = run_cli("train", "--weights", str(source_run), "--alpha", "0.5", "--data", str(data_dir),
                   "-o", str(tmp_path / "c"), check=False)  # fmt: skip
    assert proc.returncode == 4 and "Traceback" not in proc.stderr, proc.stderr
    assert "0.25" in proc.stderr and "0.5" in proc.stderr and not (tmp_path / "c").exists()


def test_sweep_fine_tunes_the_cells_a_file_fits_and_names_the_others(tmp_path, source_run, data_dir):
    args = ["sweep", "--weights", str(source_run), "--fine-tune", "none", "--data", str(data_dir), "--epochs", "1",
            "--alpha", "0.25,0.5", "--resolution", "32", "--runs", "3", "--min-seconds", "0",
            "-o", str(tmp_path / "sweep"), "--db", str(tmp_path / "r.db"), "--json"]  # fmt: skip
    summary = json.loads(run_cli(*args).stdout)
    assert summary["done"] == 1 and summary["failures"] == [] and summary["weights"] == str(source_run)
    (skipped,) = summary["cells_skipped"]
    assert (skipped["alpha"], skipped["resolution"]) == (0.5, 32) and "0.25" in skipped["reason"]
    (cell,) = summary["grid"]
    assert (cell["alpha"], cell["resolution"]) == (0.25, 32) and 0 <= cell["top1"] <= 1
    run = json.loads((tmp_path / "sweep" / "mobilenet_v1_025_32-train" / "run.json").read_text())
    assert run["transfer"]["stages"][0]["unfrozen_layers"] == [] and run["preprocessing"] == IMAGENET_PREP


SHARED = REPO.parent / "shared"
SHARED_TFLITE = SHARED / "models" / "mobilenet_v1_0.25_128_quant.tflite"
ANTS_BEES = SHARED / "datasets" / "ants-bees"


@pytest.mark.skipif(not (SHARED_TFLITE.is_file() and (ANTS_BEES / "val").is_dir()),
                    reason="needs ../shared (the ImageNet MobileNet 0.25/128 .tflite and the ants/bees photos)")  # fmt: skip
def test_new_head_on_the_shared_imagenet_model_learns_ants_vs_bees(tmp_path):
    """Real photos, real ImageNet features: 4 head-only epochs must be well above chance (50 %); a
    backbone that lost its features (wrong normalisation, BN in training mode) stays near it."""
    out = tmp_path / "run"
    run = json.loads(run_cli(
        "train", "--weights", str(SHARED_TFLITE), "--data", str(ANTS_BEES / "train"), "--val-data",
        str(ANTS_BEES / "val"), "--epochs", "4", "--patience", "0", "--fine-tune", "none", "-o", str(out), "--json",
    ).stdout)  # fmt: skip
    assert run["model"]["alpha"] == 0.25 and run["model"]["resolution"] == 128 and run["num_classes"] == 2
    assert run["preprocessing"]["mean"] == [128.0] * 3 and run["preprocessing"]["std"] == [128.0] * 3
    assert run["weights"]["kind"] == "tflite" and run["weights"]["sha256"]
    assert run["evaluation"]["n"] == 153 and run["evaluation"]["top1"] >= 0.7
