"""M5: labels are never silently shifted. A background entry is dropped or added only when a
background label is really there; otherwise the counts are refused. num_classes is checked against
labels.txt and a bundle's labels must be unique. Desktop and device scripts agree."""

from __future__ import annotations

import hashlib

import pytest

from edgekit.errors import EdgekitError
from tests.conftest import run_cli
from tests.hardening.conftest import assert_one_line_error, edit_manifest, make_bundle


def _relabel(bundle, lines):
    data = ("\n".join(lines) + "\n").encode()
    (bundle / "labels.txt").write_bytes(data)
    entry = {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
    edit_manifest(bundle, lambda m: {**m, "files": {**m["files"], "labels.txt": entry}, "num_classes": len(lines)})


def test_desktop_resolve_labels():
    from edgekit.pipeline.reference import resolve_labels

    assert resolve_labels(["a", "b", "c"], 3) == (["a", "b", "c"], None)
    labels, note = resolve_labels(["background", "a", "b", "c"], 3)
    assert labels == ["a", "b", "c"] and "background" in note
    with pytest.raises(EdgekitError, match="3 entries but the model has 4 outputs"):
        resolve_labels(["a", "b", "c"], 4)  # was: "background" inserted, exit 0
    with pytest.raises(EdgekitError, match="4 entries but the model has 3 outputs"):
        resolve_labels(["a", "b", "c", "extra"], 3)


def test_device_fit_labels():
    from edgekit.device_scripts import edgelib

    assert edgelib._fit_labels(["__background__", "a", "b"], 2, "x") == ["a", "b"]
    with pytest.raises(edgelib.InputFailure, match="4 labels but the model has 3 outputs"):
        edgelib._fit_labels(["a", "b", "c", "extra"], 3, "x")  # was: 'a' dropped, every label shifted


def test_bundle_with_one_trailing_label_too_many_is_refused_on_device(tmp_path, images):
    from tests.device.conftest import run_script

    b = make_bundle(tmp_path / "b")
    _relabel(b, ["class_0", "class_1", "class_2", "class_3"])
    proc = run_script("eval_images.py", "--model", str(b / "tiny_int8.tflite"), "--data", str(images), check=False)
    assert proc.returncode in (3, 4) and "4 labels" in proc.stderr and "3 outputs" in proc.stderr, proc.stderr


def test_num_classes_must_match_labels(tmp_path, images):
    from tests.device.conftest import run_script

    b = make_bundle(tmp_path / "b")
    edit_manifest(b, lambda m: {**m, "num_classes": 5})
    assert_one_line_error(run_cli("eval", str(b), "--data", str(images), check=False), 4, "num_classes 5", "3 labels")
    proc = run_script("eval_images.py", "--model", str(b / "tiny_int8.tflite"), "--data", str(images), check=False)
    assert proc.returncode == 4 and "num_classes 5" in proc.stderr


def test_duplicate_labels_in_a_bundle_are_refused(tmp_path, images):
    from tests.device.conftest import run_script

    b = make_bundle(tmp_path / "b")
    _relabel(b, ["class_0", "class_1", "class_0"])
    assert_one_line_error(run_cli("eval", str(b), "--data", str(images), check=False), 4, "'class_0'", "twice")
    proc = run_script("eval_images.py", "--model", str(b / "tiny_int8.tflite"), "--data", str(images), check=False)
    assert proc.returncode == 4 and "twice" in proc.stderr


def test_a_data_class_matching_two_labels_is_refused(tmp_path, images):
    """Third-party label files may repeat a name (ImageNet has two 'crane'); a class named so is ambiguous."""
    from tests.device.conftest import run_script
    from tests.hardening.tflite_build import classifier

    model = tmp_path / "four.tflite"
    model.write_bytes(classifier(classes=4))
    labels = tmp_path / "labels.txt"
    labels.write_text("class_0\nclass_1\nclass_2\nclass_1\n")
    proc = run_cli("eval", str(model), "--data", str(images), "--labels", str(labels), "--no-write", check=False)
    assert_one_line_error(proc, 3, "'class_1'", "indices 1, 3")
    proc = run_script("eval_images.py", "--model", str(model), "--data", str(images), "--labels", str(labels), check=False)  # fmt: skip
    assert proc.returncode == 3 and "'class_1'" in proc.stderr and "indices 1, 3" in proc.stderr
