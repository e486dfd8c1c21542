"""Back ends: which can run here and why not (exact versions), and onnx2tf from its isolated venv.

onnx2tf's venv costs ~2.6 GB and 3-6 minutes to create, too much for every CI run: its tests are
`slow` and run when the venv exists in the test cache (~/.cache/edgekit-tests/onnx2tf-1.29.24, or
$EDGEKIT_ONNX2TF_ENV). Create it with:
  EDGEKIT_ONNX2TF_ENV=~/.cache/edgekit-tests/onnx2tf-1.29.24 edgekit convert --install-backend onnx2tf
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgekit.pipeline.onnx_verify import FLOAT32_MAX_REL_DIFF
from tests.conftest import run_cli

pytestmark = pytest.mark.onnx

TEST_ENV = Path(os.environ.get("EDGEKIT_ONNX2TF_ENV", Path.home() / ".cache/edgekit-tests/onnx2tf-1.29.24"))


def test_backends_listed_with_reasons(tmp_path):
    proc = run_cli("convert", "--backends", "--json", env={"EDGEKIT_ONNX2TF_ENV": str(tmp_path / "none")})
    st = json.loads(proc.stdout)["backends"]
    assert st["edgekit"]["available"] is True
    assert st["onnx2tf"]["available"] is False
    assert "1.29.24" in st["onnx2tf"]["reason"] and "--install-backend onnx2tf" in st["onnx2tf"]["reason"]
    onnxtf = st["onnx-tf"]
    assert onnxtf["available"] is False  # measured: cannot import with onnx >= 1.14 / TF 2.21
    assert (
        "mapping" in onnxtf["reason"]
        and "TensorFlow 2." in onnxtf["reason"]
        and "onnx 1." in onnxtf["reason"]
    )


@pytest.mark.tf
def test_missing_onnx2tf_env_exits_8(tmp_path, separable_onnx):
    proc = run_cli(
        "convert", str(separable_onnx), "--backend", "onnx2tf", "-o", str(tmp_path / "b"),
        check=False, env={"EDGEKIT_ONNX2TF_ENV": str(tmp_path / "none")},
    )  # fmt: skip
    assert proc.returncode == 8, proc.stderr
    assert "onnx2tf 1.29.24 is not installed" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.tf
def test_onnx_tf_requested_exits_8(tmp_path, separable_onnx):
    proc = run_cli(
        "convert", str(separable_onnx), "--backend", "onnx-tf", "-o", str(tmp_path / "b"), check=False
    )
    assert proc.returncode == 8, proc.stderr
    assert "onnx-tf cannot run here" in proc.stderr and not (tmp_path / "b").exists()


needs_onnx2tf = pytest.mark.skipif(
    not (TEST_ENV / ".edgekit-ready").exists(),
    reason=f"onnx2tf venv not in the test cache ({TEST_ENV}); see this module's docstring to create it",
)


def _onnx2tf(onnx_path, out, calib_dir, check=True):
    return run_cli(
        "convert", str(onnx_path), "--backend", "onnx2tf", "--calibration", str(calib_dir),
        "--quantize", "int8,float32", "-o", str(out), "--json", check=check,
        env={"EDGEKIT_ONNX2TF_ENV": str(TEST_ENV)},
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.tf
@needs_onnx2tf
def test_onnx2tf_backend_bundle(tmp_path, separable_onnx, calib_dir):
    m = json.loads(_onnx2tf(separable_onnx, tmp_path / "b", calib_dir).stdout)
    assert m["source"]["backend"] == "onnx2tf" and m["versions"]["onnx2tf"] == "1.29.24"
    by = {e["precision"]: e["verification"] for e in m["models"]}
    assert by["float32"]["max_rel_diff"] <= FLOAT32_MAX_REL_DIFF
    assert by["int8"]["passed"] is True and by["int8"]["disagreements"] <= by["int8"]["allowed_disagreements"]
    assert by["int8"]["transposes"] == 0  # onnx2tf also converts NCHW without per-conv transposes
    assert m["float_model"] is None and (tmp_path / "b" / "source.onnx").is_file()


@pytest.mark.slow
@pytest.mark.tf
@needs_onnx2tf
def test_onnx2tf_mismatch_is_caught_not_bundled(tmp_path, resnet_onnx, calib_dir):
    """Measured: onnx2tf 1.29.24's float32 ResNetTiny (3x3/2 max pool, residual adds) differs from
    ONNX Runtime by ~0.2-1.4x the output scale. Verification refuses it instead of shipping it."""
    proc = _onnx2tf(resnet_onnx, tmp_path / "b", calib_dir, check=False)
    assert proc.returncode == 5, proc.stderr
    assert "differs from ONNX Runtime" in proc.stderr and not (tmp_path / "b").exists()
