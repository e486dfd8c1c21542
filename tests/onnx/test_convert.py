"""`edgekit convert model.onnx`: PyTorch-exported models become verified bundles, exactly like export."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.bundle.manifest import read_manifest, verify_checksums
from edgekit.pipeline import onnx_verify
from edgekit.pipeline.onnx_verify import FLOAT32_MAX_REL_DIFF, allowed_disagreements
from tests.conftest import run_cli

pytestmark = [pytest.mark.tf, pytest.mark.onnx, pytest.mark.slow]


def _convert(onnx_path: Path, out: Path, calib: Path, *extra: str) -> dict:
    proc = run_cli(
        "convert", str(onnx_path), "--calibration", str(calib), "--quantize", "int8,float32",
        "--calibration-samples", "60", "-o", str(out), "--json", *extra,
    )  # fmt: skip
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def resnet_bundle(tmp_path_factory, resnet_onnx, calib_dir):
    out = tmp_path_factory.mktemp("conv") / "resnet"
    return out, _convert(resnet_onnx, out, calib_dir, "--labels", str(_labels(tmp_path_factory)))


@pytest.fixture(scope="module")
def separable_bundle(tmp_path_factory, separable_onnx, calib_dir):
    out = tmp_path_factory.mktemp("conv") / "separable"
    return out, _convert(separable_onnx, out, calib_dir)


def _labels(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("labels") / "labels.txt"
    p.write_text("zero\none\ntwo\n", encoding="utf-8")
    return p


@pytest.mark.parametrize("which", ["resnet_bundle", "separable_bundle"])
def test_bundle_is_verified_against_onnx_runtime(which, request):
    out, printed = request.getfixturevalue(which)
    manifest = read_manifest(out)
    assert printed["bundle"] == str(out)
    assert verify_checksums(out, manifest) == []
    assert manifest["source"]["backend"] == "edgekit"
    assert manifest["model"]["input_shape"] == [1, 32, 32, 3]
    by = {m["precision"]: m for m in manifest["models"]}
    f32, i8 = by["float32"]["verification"], by["int8"]["verification"]
    assert f32["reference"] == "onnxruntime" and f32["images"] == 60 and not f32["synthetic_inputs"]
    assert f32["max_rel_diff"] <= FLOAT32_MAX_REL_DIFF and f32["passed"]
    # int8 passes the agreement gate, whose figures are recorded (not a CPU's exact agreement)
    assert i8["passed"] is True and i8["allowed_disagreements"] == allowed_disagreements(60) == 4
    assert i8["disagreements"] <= i8["allowed_disagreements"]
    assert i8["top1_agreement"] == pytest.approx(1 - i8["disagreements"] / 60, abs=1e-4)
    assert by["int8"]["io"]["input"]["dtype"] == "int8"
    for v in (f32, i8):  # per-output figures
        assert len(v["outputs"]) == 1 and v["outputs"][0]["output_scale"] > 0
    # NCHW -> NHWC without a transpose anywhere, counted in the .tflite itself.
    assert f32["transposes"] == 0 and i8["transposes"] == 0
    assert "TRANSPOSE" not in i8["ops"] and i8["ops"]["CONV_2D"] >= 4


def test_residual_and_depthwise_ops_survive(resnet_bundle, separable_bundle):
    r = {m["precision"]: m for m in read_manifest(resnet_bundle[0])["models"]}["int8"]["verification"]["ops"]
    s = {m["precision"]: m for m in read_manifest(separable_bundle[0])["models"]}["int8"]["verification"][
        "ops"
    ]
    assert r["ADD"] == 2 and r["MAX_POOL_2D"] == 1  # the two residual joins and the stem's max pool
    assert s["DEPTHWISE_CONV_2D"] == 3
    src = read_manifest(resnet_bundle[0])["source"]
    assert src["folded_into_conv"]["batchnorm"] == 6  # BatchNorm nodes left by the exporter, folded


def test_bundle_runs_like_an_exported_one(resnet_bundle, calib_dir, resnet_onnx):
    """The device-side helpers read it unchanged: embedded labels and preprocessing, float out."""
    from edgekit.converters import onnx_check
    from edgekit.data.datasets import load_folder
    from edgekit.device_scripts import edgelib

    out, _ = resnet_bundle
    manifest = read_manifest(out)
    entry = {m["precision"]: m for m in manifest["models"]}["int8"]
    model = edgelib.Model.from_file(str(out / entry["file"]))
    assert model.labels == ["zero", "one", "two"]
    assert model.meta["preprocessing"] == manifest["preprocessing"]
    batch = load_folder(calib_dir, manifest["preprocessing"])
    ref = onnx_check.run(onnx_check.session(onnx_check.load(resnet_onnx)), batch.x.transpose(0, 3, 1, 2))[0]
    got = model.predict(batch.x)
    assert np.sum(got.argmax(1) != ref.argmax(1)) <= allowed_disagreements(len(batch.x))
    labels = np.array([int(Path(p).parent.name.split("_")[1]) for p in batch.paths])
    assert np.mean(got.argmax(1) == labels) > 0.8  # trained on other digits: it really classifies
    assert (out / "source.onnx").read_bytes() == resnet_onnx.read_bytes()
    assert manifest["float_model"] == "float_model.keras" and (out / "float_model.keras").is_file()


def test_thresholds_refuse_a_broken_conversion(separable_bundle, separable_onnx, calib_dir):
    """Each convert tolerance on a real converted model: its own ONNX Runtime reference passes; a model
    that lost its input normalisation (fed raw 0-255 pixels: a classic broken conversion) is refused,
    and so are outputs just outside the float tolerances."""
    import dataclasses

    from edgekit.converters import onnx_check
    from edgekit.data.datasets import load_folder
    from edgekit.errors import VerificationError

    out, _ = separable_bundle
    manifest = read_manifest(out)
    files = {m["precision"]: (out / m["file"]).read_bytes() for m in manifest["models"]}
    batch = load_folder(calib_dir, manifest["preprocessing"])
    ref = onnx_check.run(onnx_check.session(onnx_check.load(separable_onnx)), batch.x.transpose(0, 3, 1, 2))
    raw = dataclasses.replace(batch, x=batch.x * 127.5 + 127.5)  # what the broken model computes on
    for p in ("int8", "float32"):
        assert onnx_verify.verify_against_onnx(ref, files[p], batch, p, onnx_verify.INT8_MIN_AGREEMENT)["passed"]
        with pytest.raises(VerificationError):
            onnx_verify.verify_against_onnx(ref, files[p], raw, p, onnx_verify.INT8_MIN_AGREEMENT)
    # float tolerances at their edge: outputs off by 3x the tolerance of the output scale are refused
    for p, tol in (("float32", FLOAT32_MAX_REL_DIFF), ("float16", onnx_verify.FLOAT16_MAX_REL_DIFF)):
        scale = np.abs(ref[0]).max()
        off = [ref[0] + 3 * tol * scale]
        with pytest.raises(VerificationError, match=f"tolerance {tol:.0e}"):
            onnx_verify.verify_against_onnx(off, files["float32"], batch, p, onnx_verify.INT8_MIN_AGREEMENT)
        near = [ref[0] + tol * scale / 3]  # a third of the tolerance (plus the model's own error) passes
        assert onnx_verify.verify_against_onnx(near, files["float32"], batch, p, 0.98)["passed"]


def test_nhwc_onnx_from_tf2onnx_round_trips(tmp_path, calib_dir):
    """Keras -> tf2onnx (NHWC input + Transpose) -> edgekit convert: the transpose is absorbed."""
    from edgekit.converters import keras_onnx
    from edgekit.models import build_model, resolve_config

    km = build_model(
        resolve_config("mobilenet", alpha=0.25, resolution=32, classes=3, rho=None, shortcut=None)
    )
    model, _ = keras_onnx.to_onnx(km)
    path = tmp_path / "keras_mobilenet.onnx"
    path.write_bytes(model.SerializeToString())
    proc = run_cli("convert", str(path), "--quantize", "float32", "-o", str(tmp_path / "b"), "--json")
    v = json.loads(proc.stdout)["models"][0]["verification"]
    assert json.loads(proc.stdout)["source"]["onnx_input_layout"] == "NHWC"
    assert v["transposes"] == 0 and v["max_rel_diff"] <= FLOAT32_MAX_REL_DIFF


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty"),
        (b"this is not a protobuf \xff\xfe\x00 at all" * 3, "not an ONNX model|no ONNX graph"),
        (None, "not an ONNX model|no ONNX graph|checker"),  # a real model cut in half
    ],
)
def test_malformed_onnx_is_one_clear_line(tmp_path, resnet_onnx, content, match):
    import re

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(
        resnet_onnx.read_bytes()[: resnet_onnx.stat().st_size // 2] if content is None else content
    )
    out = tmp_path / "never"
    proc = run_cli("convert", str(bad), "-o", str(out), check=False)
    assert proc.returncode == 4, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("convert:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(match, lines[0]), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".never*"))  # nothing half-written


def test_missing_file_and_bad_flags(tmp_path):
    proc = run_cli("convert", str(tmp_path / "nope.onnx"), check=False)
    assert proc.returncode == 4 and "does not exist" in proc.stderr
    proc = run_cli("convert", check=False)
    assert proc.returncode == 2 and "ONNX_FILE" in proc.stderr
    proc = run_cli("convert", "x.onnx", "--mean", "1,2", check=False)
    assert proc.returncode == 2 and "1 or 3 numbers" in proc.stderr


def test_unsupported_operator_names_it_and_the_way_out(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(  # a valid image model whose one operator (LRN) the importer lacks
        [helper.make_node("LRN", ["x"], ["y"], size=3)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    path = tmp_path / "lrn.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    proc = run_cli(
        "convert", str(path), "-o", str(tmp_path / "b"), check=False,
        env={"EDGEKIT_ONNX2TF_ENV": str(tmp_path / "no-env")},
    )  # fmt: skip
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    assert "operators not supported by edgekit's ONNX importer: LRN" in proc.stderr
    assert "--install-backend onnx2tf" in proc.stderr and not (tmp_path / "b").exists()


def test_convert_help_does_not_import_tensorflow():
    import subprocess

    code = (
        "import sys; from edgekit.cli import main\n"
        "try:\n    main(['convert', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--calibration" in proc.stdout and "--backend" in proc.stdout
