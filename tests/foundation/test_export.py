"""Export round trips: bundle contents, checksums, verification, I/O types, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.bundle.manifest import bundle_id, read_manifest, verify_checksums
from edgekit.config import ExportConfig
from edgekit.data.datasets import load_folder
from edgekit.device_scripts import edgelib
from edgekit.errors import VerificationError
from edgekit.models import resolve_config
from edgekit.pipeline.export import export_bundle
from edgekit.pipeline.verify import verify
from tests.conftest import TINY_MODEL, run_cli

pytestmark = pytest.mark.tf

FLOAT32_ATOL_OF_RANGE = 1e-4  # pinned parity tolerance for float32 TFLite vs Keras


def test_manifest_describes_the_bundle(tiny_bundle):
    m = read_manifest(tiny_bundle)
    assert m["schema_version"] == 1
    assert m["model"]["family"] == "mobilenet_v1" and m["model"]["alpha"] == 0.25
    assert m["model"]["params"] > 0 and m["model"]["macs"] > 0
    assert m["model"]["input_shape"] == [1, 32, 32, 3]
    assert m["preprocessing"]["mean"] == [127.5] * 3
    assert m["calibration"]["synthetic"] is False and m["calibration"]["samples"] == 36
    assert {e["precision"] for e in m["models"]} == {"int8", "float32"}
    assert set(m["files"]) == {"labels.txt", "float_model.keras", *[e["file"] for e in m["models"]]}
    assert {"tensorflow", "keras", "edgekit", "python"} <= set(m["versions"])
    assert verify_checksums(tiny_bundle, m) == []
    assert len(bundle_id(m)) == 64


def test_int8_model_is_full_integer_with_scale_and_zero_point(tiny_bundle):
    m = read_manifest(tiny_bundle)
    int8 = next(e for e in m["models"] if e["precision"] == "int8")
    assert int8["io"]["input"]["dtype"] == "int8" and int8["io"]["output"]["dtype"] == "int8"
    assert int8["io"]["input"]["scale"] > 0 and int8["io"]["output"]["scale"] > 0
    v = int8["verification"]
    assert v["images"] == 36 and not v["synthetic_inputs"]
    assert 0 <= v["top1_agreement"] <= 1 and v["output_correlation"] > 0.5
    assert v["size_ratio_vs_float32"] < 0.6
    # the recorded scale/zero-point are the model's own
    model = edgelib.Model((tiny_bundle / int8["file"]).read_bytes())
    assert model.input["quantization"][0] == pytest.approx(int8["io"]["input"]["scale"])
    assert model.input["quantization"][1] == int8["io"]["input"]["zero_point"]


def test_float32_tflite_matches_keras_closely(tiny_bundle, digits_dir):
    import keras

    m = read_manifest(tiny_bundle)
    f32 = next(e for e in m["models"] if e["precision"] == "float32")
    batch = load_folder(digits_dir, m["preprocessing"])
    keras_out = keras.models.load_model(tiny_bundle / "float_model.keras").predict(batch.x, verbose=0)
    tfl_out = edgelib.Model((tiny_bundle / f32["file"]).read_bytes()).predict(batch.x)
    # float32 parity: XNNPACK sums in another order than TF, so allow 1e-4 of the output range
    np.testing.assert_allclose(tfl_out, keras_out, rtol=0, atol=FLOAT32_ATOL_OF_RANGE * np.ptp(keras_out))
    assert f32["verification"]["top1_agreement"] == 1.0


def test_checksum_mismatch_is_detected(tiny_bundle, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    (copy / "labels.txt").write_text("tampered\n")
    assert verify_checksums(copy) == ["labels.txt"]


def test_verify_fails_loudly_on_a_broken_model(tiny_bundle, digits_dir):
    m = read_manifest(tiny_bundle)
    batch = load_folder(digits_dir, m["preprocessing"])
    data = (tiny_bundle / next(e["file"] for e in m["models"] if e["precision"] == "int8")).read_bytes()
    good = edgelib.Model(data).predict(batch.x)
    # a "float reference" unrelated to the model: what a broken conversion looks like from outside
    unrelated = np.random.default_rng(1).normal(size=good.shape).astype(np.float32)
    with pytest.raises(VerificationError, match="does not follow the float model"):
        verify(unrelated, data, batch)
    assert verify(good, data, batch)["top1_agreement"] == 1.0


@pytest.mark.parametrize(("io", "dtype"), [("uint8", "uint8"), ("float32", "float32")])
def test_io_types(tmp_path, digits_dir, io, dtype):
    cfg = ExportConfig(
        model=resolve_config("resnet18", resolution=32, classes=3, shortcut="A"),
        precisions=("int8",),
        io=io,
        calibration=str(digits_dir),
        calibration_samples=12,
        output=str(tmp_path / "b"),
    )
    out, manifest = export_bundle(cfg)
    assert manifest["models"][0]["io"]["input"]["dtype"] == dtype
    assert manifest["models"][0]["io"]["output"]["dtype"] == dtype
    assert json.loads((out / "manifest.json").read_text())["name"] == "resnet18_32_a"


def test_float16_export_and_failed_export_leaves_previous_bundle(tmp_path, digits_dir):
    out = tmp_path / "b"
    run_cli(
        "export",
        *TINY_MODEL,
        "-q",
        "float16",
        "--calibration",
        str(digits_dir),
        "-o",
        str(out),
    )
    before = read_manifest(out)
    assert before["models"][0]["precision"] == "float16"
    assert before["models"][0]["io"]["input"]["dtype"] == "float32"
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli(
        "export",
        *TINY_MODEL,
        "--calibration",
        str(empty),
        "-o",
        str(out),
        check=False,
    )
    assert proc.returncode == 3
    assert "contains no images" in proc.stderr and "Traceback" not in proc.stderr
    assert read_manifest(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_corrupt_calibration_images_are_skipped_and_named(tmp_path, digits_dir):
    import shutil

    calib = tmp_path / "calib"
    shutil.copytree(digits_dir, calib)
    (calib / "digit_0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cfg = ExportConfig(
        model=resolve_config("mobilenet", alpha=0.25, resolution=32, classes=3),
        calibration=str(calib),
        output=str(tmp_path / "b"),
    )
    _, manifest = export_bundle(cfg)
    assert [p.endswith("broken.png") for p in manifest["calibration"]["skipped"]] == [True]
    assert manifest["calibration"]["samples"] == 36


@pytest.mark.slow
def test_resnet_option_a_bundle_evaluates(tmp_path, digits_dir):
    """Regression (issue 12): option A's custom layer was registered only when a model was built, so
    `edgekit eval` of an option-A bundle could not load its float model (exit 4)."""
    out = tmp_path / "resnet_a"
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{p.name}\n" for p in sorted(digits_dir.iterdir()) if p.is_dir()))
    run_cli(
        "export", "--model", "resnet18", "--shortcut", "A", "--resolution", "32", "--classes", "3",
        "--labels", str(labels), "--calibration", str(digits_dir), "--calibration-samples", "12", "-o", str(out),
    )  # fmt: skip
    proc = run_cli("eval", str(out), "--data", str(digits_dir), "--limit", "12", "--json", check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["reference"]["n"] == 12 and result["reference"]["top1"] is not None
