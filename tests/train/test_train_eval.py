"""A real short training run, export from the run folder, and desktop evaluation of every target kind."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgekit.bundle.manifest import read_labels, verify_checksums
from tests.conftest import run_cli

pytestmark = [pytest.mark.tf, pytest.mark.slow]

CHANCE = 1 / 3


def test_run_folder_and_saved_model_beats_chance(train_run):
    run, info = train_run
    for name in (
        "run.json",
        "model.keras",
        "labels.txt",
        "history.json",
        "samples.npz",
        "checkpoints/best.keras",
    ):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").rglob("*")), "TensorBoard log written"
    assert read_labels(run / "labels.txt") == ["digit_0", "digit_1", "digit_2"]
    history = json.loads((run / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3] and len(history["val_top1"]) == 3
    # the corrupt file was skipped, named and counted
    assert [p for p in info["data"]["skipped"] if p.endswith("zz_truncated.png")]
    assert info["data"]["train_images"] + info["data"]["val_images"] == 120
    assert info["device"]["type"] == "CPU" and info["device"]["mixed_precision"] is False
    # figures of the model *file* on held-out validation images: clearly above chance
    ev = info["evaluation"]
    assert ev["n"] == info["data"]["val_images"] and ev["top1"] >= CHANCE + 0.25
    assert set(info["batchnorm"]) >= {"val_top1_training_statistics", "val_top1_recalibrated", "kept"}


def test_eval_run_on_unseen_digits(train_run, heldout_dir):
    run, _ = train_run
    r = json.loads(run_cli("eval", str(run), "--data", str(heldout_dir), "--json").stdout)
    assert r["kind"] == "run" and r["data"]["n"] == 60
    assert r["reference"]["top1"] >= CHANCE + 0.25
    assert r["reference"]["device"]["type"] == "CPU"
    # a run has no .tflite yet: the int8 export would make is converted in memory and compared
    assert "training images" in r["tflite_note"] and r["tflite"]["n"] == 60
    assert r["agreement"] >= 0.8
    assert not (run / "reference.json").exists()


def test_export_from_run_brings_labels_preprocessing_calibration(train_run, run_bundle):
    run, info = train_run
    bundle, man = run_bundle
    assert read_labels(bundle / "labels.txt") == read_labels(run / "labels.txt")
    assert man["preprocessing"] == info["preprocessing"]
    assert man["model"]["family"] == "resnet18" and man["model"]["resolution"] == 32
    assert man["calibration"]["source"].startswith("run:") and not man["calibration"]["synthetic"]
    w = man["source"]["weights"]  # the provenance of what was loaded (edgekit.pipeline.weights)
    assert w["kind"] == "run" and w["file"] == str(run / "model.keras") and len(w["sha256"]) == 64
    acc = next(e for e in man["models"] if e["precision"] == "int8")["accuracy"]
    assert acc["n"] == info["data"]["val_images"] and "held-out" in acc["data"]
    assert acc["float_top1"] == pytest.approx(info["evaluation"]["top1"], abs=1e-4)
    assert acc["drop_points"] == pytest.approx((acc["float_top1"] - acc["int8_top1"]) * 100, abs=0.02)
    budget = acc["max_drop"]
    assert budget["max_drop_points"] == 25 and budget["budget_met"] is True
    assert budget["full_int8"]["size_bytes"] > 0 and budget["full_int8"]["host_latency_ms"] > 0


def test_eval_bundle_gives_all_figures_and_writes_reference(run_bundle, heldout_dir):
    bundle, _ = run_bundle
    r = json.loads(run_cli("eval", str(bundle), "--data", str(heldout_dir), "--json").stdout)
    for key in ("reference", "tflite"):
        assert {"top1", "top5", "n", "per_class", "confusion"} <= set(r[key])
        assert r[key]["n"] == 60 and 0 <= r[key]["top1"] <= r[key]["top5"] <= 1
        assert set(r[key]["per_class"]) == {"digit_0", "digit_1", "digit_2"}
        assert np.array(r[key]["confusion"]["matrix"]).sum() == 60
    import tensorflow as tf

    assert r["reference"]["device"]["type"] == ("GPU" if tf.config.list_physical_devices("GPU") else "CPU")
    assert r["tflite"]["input_dtype"] == "int8"
    assert r["top1_change"] == pytest.approx(r["tflite"]["top1"] - r["reference"]["top1"], abs=1e-4)
    assert r["agreement"] >= 0.8 and r["output_diff"]["max_abs"] >= r["output_diff"]["mean_abs"] > 0
    ref = json.loads((bundle / "reference.json").read_text())
    assert ref["tflite"]["top1"] == r["tflite"]["top1"] and len(ref["tflite"]["predictions"]) == 60
    assert {"path", "label", "pred"} <= set(ref["reference"]["predictions"][0])
    assert verify_checksums(bundle) == []  # reference.json is an addition, not a changed file


def test_eval_third_party_uint8_tflite_with_background_label(train_dir, heldout_dir, tmp_path):
    """A TF-classic-style model: uint8 input, output 0 = background, no embedded metadata.

    A small CNN trained here (in-process, seconds) stands in for a model from elsewhere."""
    import keras

    from edgekit.converters import keras_tflite
    from edgekit.data import datasets as D

    keras.utils.set_random_seed(0)
    prep = {"size": [32, 32], "mean": [127.5] * 3, "std": [127.5] * 3}
    xt = D.decode(D.open_dataset(train_dir), prep)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    digits = keras.layers.Dense(3)(x)
    head = keras.layers.Dense(4, name="with_background")
    model = keras.Model(inp, head(digits))
    kernel = np.zeros((3, 4), np.float32)
    kernel[:, 1:] = np.eye(3)
    head.set_weights([kernel, np.array([-30.0, 0, 0, 0], np.float32)])
    head.trainable = False
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(xt.x, xt.y + 1, epochs=15, batch_size=16, verbose=0)  # label k -> output k + 1
    calib = xt.x[:32]
    flat = keras_tflite.convert(
        model, "int8", representative=lambda: (calib[i : i + 1] for i in range(len(calib))), io_type="uint8"
    )
    tfl = tmp_path / "classic_quant.tflite"
    tfl.write_bytes(flat)
    with_bg = tmp_path / "labels_bg.txt"
    with_bg.write_text("background\ndigit_0\ndigit_1\ndigit_2\n")
    no_bg = tmp_path / "labels.txt"
    no_bg.write_text("digit_0\ndigit_1\ndigit_2\n")
    r = json.loads(run_cli("eval", str(tfl), "--data", str(heldout_dir), "--labels", str(with_bg), "--json").stdout)
    assert r["kind"] == "tflite" and "reference" not in r
    assert r["tflite"]["input_dtype"] == "uint8" and r["labels"]["count"] == 4
    assert r["preprocessing"]["source"] == "guessed"
    assert r["tflite"]["top1"] >= CHANCE + 0.25
    # one label short: never shifted silently (every class would be named wrong); the error says how to fix it
    proc = run_cli("eval", str(tfl), "--data", str(heldout_dir), "--labels", str(no_bg), "--json", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and not proc.stdout.strip()
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert "3 entries" in line and "4 outputs" in line and "background" in line, line


def test_eval_errors_are_one_line(run_bundle, tmp_path):
    bundle, _ = run_bundle
    proc = run_cli("eval", str(bundle), "--data", str(tmp_path / "missing"), check=False)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    other = tmp_path / "other"
    (other / "zebra").mkdir(parents=True)
    shutil.copy(next(bundle.parent.rglob("*.tflite")), other / "zebra" / "not_an_image.png")
    proc = run_cli("eval", str(bundle), "--data", str(other), check=False)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr


def test_resume_continues_from_last_checkpoint(train_run, tmp_path):
    run, info = train_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("tensorboard"))
    best_before = (copy / "checkpoints" / "best.keras").read_bytes()
    proc = run_cli("train", "--resume", "--epochs", "4", "-o", str(copy), "--json")
    r = json.loads(proc.stdout)
    assert "resuming at epoch 4/4" in proc.stderr
    history = json.loads((copy / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3, 4] and len(history["val_top1"]) == 4
    assert r["training"]["epochs_run"] == 4 and r["config"]["epochs"] == 4
    assert r["config"]["data"] == info["config"]["data"]
    # best.keras is replaced only by an epoch better than all before it
    if history["val_top1"][3] <= max(history["val_top1"][:3]):
        assert (copy / "checkpoints" / "best.keras").read_bytes() == best_before


def test_resume_restores_weights_and_optimizer_state(train_run, tmp_path):
    """--resume builds the model afresh and copies last.keras into it: weights, and the optimizer's
    moments and step count (the learning-rate schedule continues where it stopped)."""
    import tensorflow as tf

    from edgekit.bundle.keras_model import load_keras
    from edgekit.errors import InputDataError
    from edgekit.models import resolve_config
    from edgekit.pipeline.resume import restore as _restore
    from edgekit.pipeline.train import _compiled_model
    from edgekit.pipeline.train_config import TrainConfig

    run, info = train_run
    last = load_keras(run / "checkpoints" / "last.keras", compile=True)
    cfg = TrainConfig.from_dict(info["config"])
    fresh = _compiled_model(cfg, cfg.model, 5, cfg.model.classes, mixed=False)
    fresh.optimizer.build(fresh.trainable_variables)
    assert int(fresh.optimizer.iterations) == 0 < int(last.optimizer.iterations)
    _restore(fresh, last, tf.distribute.get_strategy(), None)
    assert int(fresh.optimizer.iterations) == int(last.optimizer.iterations)
    for a, b in zip([*fresh.weights, *fresh.optimizer.variables], [*last.weights, *last.optimizer.variables],
                    strict=True):  # fmt: skip
        assert np.array_equal(np.asarray(a), np.asarray(b)), a.path
    other = resolve_config(cfg.model.family, resolution=cfg.model.resolution, classes=cfg.model.classes + 1,
                           shortcut=cfg.model.shortcut)  # fmt: skip
    wrong = _compiled_model(cfg, other, 5, other.classes, mixed=False)
    wrong.optimizer.build(wrong.trainable_variables)
    with pytest.raises(InputDataError, match="does not fit"):
        _restore(wrong, last, tf.distribute.get_strategy(), None)
