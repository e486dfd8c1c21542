"""Keras -> ONNX: `edgekit export --format onnx`, float checked against Keras, int8 QDQ agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.bundle.manifest import read_manifest, verify_checksums
from edgekit.pipeline.onnx_verify import FLOAT32_MAX_REL_DIFF, allowed_disagreements
from tests.conftest import run_cli

pytestmark = [pytest.mark.tf, pytest.mark.onnx, pytest.mark.slow]


def test_export_format_onnx_adds_verified_onnx_files(tmp_path, digits_dir):
    import onnx

    out = tmp_path / "bundle"
    proc = run_cli(
        "export", "--model", "mobilenet", "--alpha", "0.25", "--resolution", "32", "--classes", "3",
        "--quantize", "int8", "--calibration", str(digits_dir), "--format", "onnx", "-o", str(out), "--json",
    )  # fmt: skip
    printed = json.loads(proc.stdout)
    manifest = read_manifest(out)
    assert verify_checksums(out, manifest) == []
    files = {e["precision"]: e for e in manifest["onnx_models"]}
    assert set(files) == {"float32", "int8"}
    assert printed["onnx_models"][0]["file"] == files["float32"]["file"]
    f32 = files["float32"]["verification"]
    assert f32["reference"] == "keras" and f32["max_rel_diff"] <= FLOAT32_MAX_REL_DIFF
    # random weights leave near ties: top-1 may differ only where the two best Keras logits lie within
    # the float tolerance (which image flips depends on the CPU's float rounding)
    import keras

    from edgekit.converters import onnx_check
    from edgekit.data.datasets import load_folder

    batch = load_folder(digits_dir, manifest["preprocessing"])
    ref = np.asarray(keras.models.load_model(out / "float_model.keras").predict(batch.x, verbose=0))
    got = onnx_check.run(onnx_check.session(onnx.load(out / files["float32"]["file"])), batch.x)[0]
    best2 = np.sort(ref, axis=1)[:, -2:]
    flips = got.argmax(1) != ref.argmax(1)
    assert not (flips & (best2[:, 1] - best2[:, 0] > 2 * FLOAT32_MAX_REL_DIFF * np.abs(ref).max())).any()
    assert f32["top1_agreement"] == pytest.approx(1 - flips.mean(), abs=1e-4)
    # BatchNorm after the depthwise convolutions was folded before quantization: no Mul/Add left.
    ops = files["float32"]["ops"]
    assert "Mul" not in ops and "BatchNormalization" not in ops and ops["Conv"] == 27
    assert manifest["onnx_export"]["folded_into_conv"]["mul"] == 13
    q = onnx.load(out / files["int8"]["file"])
    kinds = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds
    # Random weights: int8 figures are recorded, not judged (the trained-model test below judges).
    assert files["int8"]["verification"]["images"] == 36
    # The TFLite models are still there: the bundle contract for devices is unchanged.
    assert {m["precision"] for m in manifest["models"]} == {"int8"}


def test_bad_format_is_a_usage_error(tmp_path):
    proc = run_cli("export", "--resolution", "32", "--format", "pdf", "-o", str(tmp_path / "b"), check=False)
    assert proc.returncode == 2 and "--format" in proc.stderr and not (tmp_path / "b").exists()


def test_onnx_int8_keeps_top1_on_a_trained_model(separable_bn_onnx, calib_dir):
    """The issue's goal: ORT int8 (QDQ) agrees with the float model on >= 98% of real images.

    The trained network comes in through the importer with BatchNorm kept as Keras layers, so the
    tf2onnx export shows the Mul/Add pattern that costs int8 accuracy unless folded.
    """
    from edgekit.converters import onnx_check, onnx_keras
    from edgekit.data.datasets import load_folder
    from edgekit.pipeline.onnx_export import export_onnx
    from tests.onnx.conftest import PREP

    km, report = onnx_keras.convert(onnx_check.load(separable_bn_onnx), fold_batchnorm=False)
    assert report.ops.get("BatchNormalization", 0) == 7
    calib = load_folder(calib_dir, PREP)
    add, files = export_onnx(km, calib, "sep", ("int8",))
    by = {e["precision"]: e for e in add["onnx_models"]}
    assert not {"BatchNormalization", "Mul", "Add"} & set(by["float32"]["ops"])  # all folded
    assert by["float32"]["verification"]["max_rel_diff"] <= FLOAT32_MAX_REL_DIFF
    agreement = by["int8"]["verification"]["top1_agreement"]
    ref = np.asarray(km.predict(calib.x, verbose=0))
    q = onnx_check.run(onnx_check.session(files["sep_int8.onnx"]), calib.x)[0]
    assert np.mean(q.argmax(1) == ref.argmax(1)) == pytest.approx(agreement, abs=1e-4)
    # judged like convert's int8: no more disagreements than a 98%-agreement conversion would show
    # (ORT's int8 kernels differ between AVX2 and VNNI CPUs, so the exact count may too)
    assert np.sum(q.argmax(1) != ref.argmax(1)) <= allowed_disagreements(len(calib.x))
