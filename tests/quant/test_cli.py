"""`--quantizer converter|litert` through the CLI: manifest record, measured default, clean errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgekit.pipeline import litert_quant as lq
from tests.conftest import REPO, TINY_MODEL, run_cli

# Makes `import ai_edge_quantizer` (or tensorflow) fail in a subprocess, as on a machine without it.
BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None
sys.meta_path.insert(0, _Block())
"""


def _blocked_env(tmp_path: Path, *modules: str) -> dict:
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(BLOCKER.format(blocked=set(modules)), encoding="utf-8")
    return {"PYTHONPATH": str(shim)}


def test_backend_choice_per_precision():
    assert lq.backend_for("float32", "litert") == "converter"  # float32 is the conversion, not a quantizer
    for p in ("int8", "dynamic", "float16"):
        assert lq.backend_for(p, None) == lq.DEFAULT_BACKEND[p]
        assert lq.backend_for(p, "converter") == "converter"
    assert lq.backend_for("int8", "litert") == "litert"
    from edgekit.errors import UsageError

    with pytest.raises(UsageError, match="litert makes int8 and dynamic, not float16"):
        lq.backend_for("float16", "litert")
    with pytest.raises(UsageError, match="--quantizer must be one of"):
        lq.backend_for("int8", "tflite")
    with pytest.raises(UsageError, match="int8 input and output"):
        lq.litert_recipe("int8", io="uint8")


def test_default_backend_is_the_one_the_benchmark_measured_best():
    """bench_quant writes which back end scored higher per precision; the code's default must follow it."""
    text = (REPO / "BENCHMARKS.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- quant-defaults: (\{.*?\}) -->", text)
    assert m, "run python -m benchmarks.bench_quant: BENCHMARKS.md has no measured defaults"
    measured = json.loads(m.group(1))
    for precision, backend in measured.items():
        assert lq.DEFAULT_BACKEND[precision] == backend, precision


def test_missing_quantizer_is_one_line_and_exit_8(tmp_path):
    proc = run_cli(
        "export", *TINY_MODEL, "--quantizer", "litert", "-o", str(tmp_path / "b"),
        check=False, env=_blocked_env(tmp_path, "ai_edge_quantizer"), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 8, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ai-edge-quantizer is not installed")
    assert "pip install 'edgekit[quantizer]'" in lines[-1]
    assert "Traceback" not in proc.stderr and not (tmp_path / "b").exists()


@pytest.mark.tf
@pytest.mark.slow
def test_export_records_backend_and_recipe(tmp_path, digits_dir):
    pytest.importorskip("ai_edge_quantizer")
    out = tmp_path / "lit"
    proc = run_cli(
        "export", *TINY_MODEL, "-q", "int8,float32", "--quantizer", "litert",
        "--calibration", str(digits_dir), "--calibration-samples", "36", "-o", str(out), "--json",
    )  # fmt: skip
    man = json.loads(proc.stdout)
    by = {e["precision"]: e for e in man["models"]}
    assert by["float32"]["quantizer"]["backend"] == "converter"
    q = by["int8"]["quantizer"]
    assert q["backend"] == "litert" and q["tool"] == "ai-edge-quantizer" and q["version"] == "0.10.0"
    assert q["recipe"]["recipe"] == "static_wi8_ai8" and q["recipe"]["per_channel"] is True
    assert by["int8"]["quantizer"]["recipe"]["ranges"] == "minmax"
    assert by["int8"]["io"]["input"]["dtype"] == "int8"
    assert by["int8"]["verification"]["output_correlation"] >= 0.5
    on_disk = {e["precision"]: e for e in json.loads((out / "manifest.json").read_text())["models"]}
    assert on_disk["int8"]["quantizer"] == q


def test_quantize_any_float_tflite_without_tensorflow(tmp_path, tiny_bundle, digits_dir):
    """`edgekit quantize` on a float .tflite with TensorFlow made unimportable."""
    pytest.importorskip("ai_edge_quantizer")
    src = next(tiny_bundle.glob("*_float32.tflite"))
    out = tmp_path / "q.tflite"
    proc = run_cli(
        "quantize", str(src), "--calibration", str(digits_dir), "--calibration-samples", "24",
        "-o", str(out), "--json", env=_blocked_env(tmp_path, "tensorflow", "keras"), timeout=120,
    )  # fmt: skip
    res = json.loads(proc.stdout)
    assert out.is_file() and res["output"] == str(out)
    assert res["quantizer"]["backend"] == "litert" and res["quantizer"]["recipe"]["recipe"] == "static_wi8_ai8"
    assert res["size_bytes"]["quantized"] < res["size_bytes"]["float"] / 2
    assert res["verification"]["images"] == 24 and res["verification"]["output_correlation"] >= 0.5
