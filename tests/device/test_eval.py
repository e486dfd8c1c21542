"""Accuracy on the device: eval_images.py on folders, CSVs and .npz, and `eval --device local`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.device.conftest import int8_model, last_json, run_script

pytestmark = pytest.mark.tf  # the tiny bundle and the third-party models are made with TensorFlow


@pytest.fixture(scope="module")
def named_digits(tmp_path_factory, digits_dir):
    """The digits with folders named like the bundle's labels (class_0..2), plus one corrupt image."""
    root = tmp_path_factory.mktemp("named")
    for i, d in enumerate(sorted(p for p in digits_dir.iterdir() if p.is_dir())):
        shutil.copytree(d, root / f"class_{i}")
    (root / "class_1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root


def _host_predictions(model_path, folder, prep):
    """What the desktop computes on the same files (edgelib in-process)."""
    from edgekit.device_scripts import edgelib

    m = edgelib.Model.from_file(str(model_path))
    out = {}
    for p in edgelib.list_images(str(folder)):
        try:
            x = edgelib.preprocess(edgelib.decode_image(p), prep)[None]
        except edgelib.ImageReadError:
            continue
        out[p] = int(np.argmax(m.predict(x)[0]))
    return out


def test_folder_eval_matches_host_and_skips_corrupt(tiny_bundle, named_digits):
    model = int8_model(tiny_bundle)
    doc = last_json(
        run_script("eval_images.py", "--model", str(model), "--data", str(named_digits), "--json").stdout
    )
    assert doc["schema_version"] == 1 and doc["kind"] == "eval"
    assert doc["n"] == 36 and len(doc["predictions"]) == 36
    assert [s["path"].endswith("broken.png") for s in doc["skipped"]] == [True]
    assert 0.0 <= doc["top1"] <= doc["top5"] <= 1.0
    assert doc["top5"] == 1.0  # 3 classes: the true one is always among the top 5
    correct = sum(p["pred"] == p["label"] for p in doc["predictions"])
    assert doc["top1"] == pytest.approx(correct / 36)
    assert sum(c["n"] for c in doc["per_class"].values()) == 36
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    host = _host_predictions(model, named_digits, manifest["preprocessing"])
    assert {p["path"]: p["pred"] for p in doc["predictions"]} == host  # same code, same inputs
    assert set(doc["latency_ms"]) >= {"p50", "p90", "p99", "mean", "std", "min", "max"}
    assert doc["model"]["preprocessing_source"] == "manifest"


def test_csv_and_npz_give_the_folder_predictions(tiny_bundle, named_digits, tmp_path):
    from edgekit.bundle.manifest import read_labels, read_manifest
    from edgekit.devices.jobs import pack_eval_npz

    model = str(int8_model(tiny_bundle))
    folder = last_json(
        run_script("eval_images.py", "--model", model, "--data", str(named_digits), "--json").stdout
    )
    rows = ["path,label"] + [
        f"{named_digits.name}/{p.parent.name}/{p.name},{p.parent.name}"
        for p in sorted(named_digits.glob("*/*.png"))
    ]
    csv_path = named_digits.parent / "list.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    csv_doc = last_json(
        run_script("eval_images.py", "--model", model, "--data", str(csv_path), "--json").stdout
    )
    assert csv_doc["data"]["kind"] == "csv"
    assert csv_doc["top1"] == folder["top1"] and csv_doc["n"] == folder["n"]
    assert len(csv_doc["skipped"]) == 1

    labels = read_labels(tiny_bundle / "labels.txt")
    npz = pack_eval_npz(named_digits, read_manifest(tiny_bundle)["preprocessing"], labels, tmp_path / "e.npz")
    npz_doc = last_json(run_script("eval_images.py", "--model", model, "--data", str(npz), "--json").stdout)
    assert npz_doc["n"] == 36
    by_path = {p["path"]: (p["pred"], p["top"]) for p in folder["predictions"]}
    for p in npz_doc["predictions"]:
        assert (p["pred"], p["top"]) == by_path[p["path"]]  # bit-for-bit the same scores


def test_third_party_uint8_model_with_background_label(tf_models, named_digits, tmp_path):
    """uint8 input, no metadata, a labels file whose first entry is a background class."""
    labels = tmp_path / "labels.txt"
    labels.write_text("background\nclass_0\nclass_1\nclass_2\n")
    doc = last_json(
        run_script(
            "eval_images.py", "--model", str(tf_models["uint8_fixed"]), "--data", str(named_digits),
            "--labels", str(labels), "--json",
        ).stdout
    )  # fmt: skip
    assert doc["model"]["input"]["dtype"] == "uint8"
    assert doc["model"]["preprocessing_source"] == "guessed"
    assert doc["labels"][0] == "background"
    assert {p["label"] for p in doc["predictions"]} == {1, 2, 3}  # folders matched by name, after background
    assert doc["n"] == 36


def test_labels_that_do_not_fit_are_refused(bare_model, named_digits, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\ne\nf\n")
    proc = run_script(
        "eval_images.py", "--model", str(bare_model), "--data", str(named_digits), "--labels", str(labels),
        check=False,
    )  # fmt: skip
    assert proc.returncode == 3
    assert "6 labels but the model has 3 outputs" in proc.stderr and "Traceback" not in proc.stderr


def test_empty_folder_and_unknown_class(bare_model, tmp_path, named_digits):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_script("eval_images.py", "--model", str(bare_model), "--data", str(empty), check=False)
    assert proc.returncode == 3 and "contains no images" in proc.stderr
    odd = tmp_path / "odd"
    shutil.copytree(named_digits / "class_0", odd / "class_0")
    shutil.copytree(named_digits / "class_1", odd / "zebra")
    proc = run_script("eval_images.py", "--model", str(bare_model), "--data", str(odd), check=False)
    assert proc.returncode == 3 and "'zebra'" in proc.stderr


def test_eval_device_local_through_the_cli_function(tiny_bundle, named_digits, capsys):
    from edgekit.cli.device_eval import run_device_eval

    run_device_eval(model=str(tiny_bundle), data=str(named_digits), labels=None, device="local", threads=1,
                    as_json=True)  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["device"]["name"] == "local" and result["device"]["kind"] == "local"
    assert result["tflite"]["n"] == 36
    assert result["tflite"]["top1"] == result["device_result"]["top1"]
    assert result["precision"] == "int8"


def test_eval_device_errors(tiny_bundle, named_digits, tmp_path):
    from edgekit.cli.device_eval import run_device_eval
    from edgekit.errors import InputDataError, UsageError

    with pytest.raises(UsageError, match="edgekit devices add"):
        run_device_eval(model=str(tiny_bundle), data=str(named_digits), labels=None, device="pi", threads=1,
                        as_json=True)  # fmt: skip
    with pytest.raises(InputDataError, match="does not exist"):
        run_device_eval(model=str(tiny_bundle), data=str(tmp_path / "nope"), labels=None, device="local",
                        threads=1, as_json=True)  # fmt: skip


def test_device_commands_record_their_results(tiny_bundle, digit_video, tmp_path):
    from edgekit.results.store import open_store

    db = tmp_path / "results.db"
    env = {"EDGEKIT_DB": str(db)}
    run_cli("profile", str(tiny_bundle), "--runs", "3", "--min-seconds", "0", "--json", env=env)
    run_cli("camera", str(tiny_bundle), "--source", str(digit_video), "--max-frames", "5", "--json", env=env)
    with open_store(db) as store:
        runs = store.query()
        kinds = sorted(r["kind"] for r in runs)
        assert kinds == ["camera", "profile"]
        prof = next(r for r in runs if r["kind"] == "profile")
        assert prof["device"] == "local" and prof["p50_ms"] > 0
        assert {m["precision"] for m in store.get(prof["id"])["measurements"]} == {"int8", "float32"}
