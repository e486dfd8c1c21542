"""The desktop reference's speed (batch-1 latency, throughput, where it ran) and its Keras backends."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.pipeline.keras_reference import OUTPUT_ATOL
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def bundle_copy(tmp_path_factory, tiny_bundle) -> Path:
    """The tiny bundle in a folder of its own: eval writes reference.json into it."""
    out = tmp_path_factory.mktemp("refspeed") / "tiny"
    shutil.copytree(tiny_bundle, out)
    return out


@pytest.fixture(scope="module")
def folder_labels(tmp_path_factory, digits_dir) -> Path:
    labels = tmp_path_factory.mktemp("labels") / "labels.txt"
    labels.write_text("".join(f"{d.name}\n" for d in sorted(digits_dir.iterdir()) if d.is_dir()))
    return labels


def _sane_speed(block: dict) -> None:
    lat, thr = block["latency_ms"], block["throughput"]
    assert lat["batch"] == 1 and lat["runs"] >= 20 and lat["warmup"] >= 1
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["max"]
    assert 1e-3 < lat["p50"] < 60_000  # milliseconds per image: not seconds, not microseconds
    assert thr["batch"] == 64 and thr["runs"] >= 3
    # images/s and ms per batch come from the same samples: the units must agree exactly
    assert thr["images_per_s"] == pytest.approx(64 * 1000 / thr["latency_ms"]["mean"], rel=1e-6)


@pytest.fixture(scope="module")
def desktop(bundle_copy, digits_dir, folder_labels, tmp_path_factory) -> tuple[dict, Path]:
    """`edgekit eval BUNDLE` on the desktop (TensorFlow backend): its --json result and its database."""
    db = tmp_path_factory.mktemp("refdb") / "r.db"
    args = ["eval", str(bundle_copy), "--data", str(digits_dir), "--labels", str(folder_labels), "--json"]
    return json.loads(run_cli(*args, "--db", str(db)).stdout), db


def test_desktop_eval_measures_reference_and_host_speed(desktop, bundle_copy):
    result, db = desktop
    ref, host = result["reference"], result["tflite"]
    _sane_speed(ref)
    _sane_speed(host)
    assert ref["device"]["type"] == "CPU" and ref["device"]["name"]  # no GPU here: labelled CPU
    assert ref["backend"] == "tensorflow" and ref["precision"] == "float32"
    assert ref["versions"]["keras"] and ref["versions"]["tensorflow"]
    assert host["threads"] == os.cpu_count() and host["device"]["type"] == "CPU"
    # the same figures in reference.json and in the database
    saved = json.loads((bundle_copy / "reference.json").read_text())
    assert saved["reference"]["latency_ms"] == ref["latency_ms"] and saved["reference"]["device"] == ref["device"]
    from edgekit.results.store import open_store

    with open_store(db, create=False) as s:
        (row,) = s.query()
    assert row["reference_p50_ms"] == pytest.approx(ref["latency_ms"]["p50"])
    assert row["reference_images_per_s"] == pytest.approx(ref["throughput"]["images_per_s"])
    assert row["reference_device"].startswith("CPU ") and "Keras/tensorflow" in row["reference_device"]
    assert row["p50_ms"] == pytest.approx(host["latency_ms"]["p50"])  # the host .tflite's own latency


def test_device_eval_carries_the_comparison(desktop, bundle_copy, digits_dir, folder_labels, tmp_path):
    """eval --device local after the desktop eval: device / reference latency, top-1 change, agreement."""
    args = ["--data", str(digits_dir), "--labels", str(folder_labels), "--json", "--db", str(tmp_path / "r.db")]
    ref = json.loads((bundle_copy / "reference.json").read_text())
    dev = json.loads(run_cli("eval", str(bundle_copy), *args, "--device", "local").stdout)
    vs = dev["vs_reference"]
    assert vs["reference_p50_ms"] == pytest.approx(ref["reference"]["latency_ms"]["p50"])
    assert vs["latency_ratio"] == pytest.approx(vs["device_p50_ms"] / vs["reference_p50_ms"])
    assert vs["device_p50_ms"] == pytest.approx(dev["tflite"]["latency_ms"]["p50"])
    assert vs["top1_change_points"] == pytest.approx((dev["tflite"]["top1"] - ref["reference"]["top1"]) * 100, abs=1e-3)
    assert vs["matched_images"] == ref["data"]["n"] and 0 <= vs["agreement"] <= 1
    assert vs["reference_where"].startswith("CPU ") and vs["notes"] == []


# --------------------------------------------------------------------------- backends


def _installed(backend: str) -> str | None:
    return None if importlib.util.find_spec(backend) else f"the {backend} backend is not installed (pip install {backend})"


def _keras_reference(backend: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "edgekit.pipeline.keras_reference", *args],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tf_outputs(tmp_path_factory, bundle_copy, digits_dir, folder_labels) -> tuple[Path, Path]:
    """The eval images preprocessed as the bundle says, and the TensorFlow backend's outputs on them."""
    from edgekit.bundle.manifest import read_manifest
    from edgekit.devices.jobs import pack_eval_npz

    tmp = tmp_path_factory.mktemp("backends")
    labels = folder_labels.read_text().split()
    x = pack_eval_npz(digits_dir, read_manifest(bundle_copy)["preprocessing"], labels, tmp / "x.npz")
    out = tmp / "tensorflow.npz"
    proc = _keras_reference("tensorflow", "--model", str(bundle_copy / "float_model.keras"), "--inputs", str(x),
                            "--out", str(out), "--runs", "3", "--min-seconds", "0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return x, out


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_backends_give_the_tensorflow_predictions(backend, tf_outputs, bundle_copy, tmp_path):
    why = _installed(backend)
    if why:
        pytest.skip(why)
    x, expected = tf_outputs
    out = tmp_path / f"{backend}.npz"
    proc = _keras_reference(backend, "--model", str(bundle_copy / "float_model.keras"), "--inputs", str(x),
                            "--out", str(out), "--expect", str(expected), "--runs", "3", "--min-seconds", "0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.splitlines()[-1])
    assert doc["backend"] == backend and doc["device"]["type"] == "CPU"
    check = doc["check"]
    a, b = np.load(out)["outputs"], np.load(expected)["outputs"]
    assert check["ok"] and check["max_abs_diff"] <= OUTPUT_ATOL
    assert a.shape == b.shape and np.allclose(a, b, atol=OUTPUT_ATOL, rtol=0)
    # the same top-1 on every image whose two best classes are further apart than the tolerance
    top2 = np.sort(b, axis=-1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * OUTPUT_ATOL
    assert clear.sum() >= len(b) // 2 and (a.argmax(-1) == b.argmax(-1))[clear].all()
    assert not np.allclose(a, a.mean(0))  # the images give different outputs: the check means something


@pytest.mark.slow
def test_mixed_precision_is_labelled_and_not_the_reference(tf_outputs, bundle_copy):
    why = _installed("torch")
    if why:
        pytest.skip(why)
    x, expected = tf_outputs
    proc = _keras_reference("torch", "--model", str(bundle_copy / "float_model.keras"), "--inputs", str(x),
                            "--precision", "mixed_bfloat16", "--expect", str(expected), "--atol", "1e9",
                            "--runs", "3", "--min-seconds", "0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.splitlines()[-1])
    assert doc["precision"] == "mixed_bfloat16" and "not the float32 reference" in doc["precision_note"]
    from edgekit.pipeline.keras_reference import load

    model = load(str(bundle_copy / "float_model.keras"), "mixed_bfloat16")  # what that subprocess ran
    policies = {layer.dtype_policy.name for layer in model.layers if layer.weights}
    assert policies == {"mixed_bfloat16"} and model.layers[-1].compute_dtype == "bfloat16"


@pytest.mark.slow
def test_eval_backend_torch_through_the_cli(desktop, bundle_copy, digits_dir, folder_labels, tmp_path):
    why = _installed("torch")
    if why:
        pytest.skip(why)
    args = ["eval", str(bundle_copy), "--data", str(digits_dir), "--labels", str(folder_labels), "--no-write",
            "--json", "--db", str(tmp_path / "r.db")]  # fmt: skip
    tf = desktop[0]
    torch = json.loads(run_cli(*args, "--backend", "torch").stdout)
    assert torch["reference"]["backend"] == "torch" and "torch" in torch["reference"]["versions"]
    assert torch["reference"]["top1"] == tf["reference"]["top1"]
    assert torch["reference"]["per_class"] == tf["reference"]["per_class"]
    assert torch["reference"]["latency_ms"]["p50"] > 0


def test_missing_backend_is_one_line(bundle_copy, digits_dir, folder_labels, tmp_path):
    """A backend that is not installed (or whose import fails) is named, exit 8, no traceback."""
    missing = next((b for b in ("jax", "torch") if _installed(b)), None)
    env = {}
    if missing is None:  # both installed: a jax whose import fails, first on the path
        shim = tmp_path / "shim" / "jax"
        shim.mkdir(parents=True)
        (shim / "__init__.py").write_text("raise ImportError('No module named jaxlib (simulated broken install)')\n")
        env = {"PYTHONPATH": f"{shim.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        missing = "jax"
    proc = run_cli("eval", str(bundle_copy), "--data", str(digits_dir), "--labels", str(folder_labels),
                   "--no-write", "--backend", missing, check=False, env=env)  # fmt: skip
    assert proc.returncode == 8, proc.stderr
    assert missing in proc.stderr and "Traceback" not in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("error")]) == 1


@pytest.mark.slow
def test_gpu_reference_script_on_cpu(bundle_copy, digits_dir, tmp_path):
    """scripts/gpu_reference.sh pack + run, here on the CPU (labelled CPU): outputs match the CPU reference."""
    out = tmp_path / "gpu-ref"
    # a generous step timeout: the script's 120 s per backend is for a GPU machine, not a busy CI CPU
    env = {**os.environ, "PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "2", "EDGEKIT_GPU_STEP_TIMEOUT": "900"}
    script = REPO / "scripts" / "gpu_reference.sh"
    pack = subprocess.run(["bash", str(script), "pack", str(bundle_copy), str(digits_dir), str(out)],
                          capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert pack.returncode == 0, pack.stderr
    assert {"float_model.keras", "inputs.npz", "cpu_reference.npz", "keras_reference.py"} <= {p.name for p in out.iterdir()}
    backends = ",".join(b for b in ("torch", "jax") if not _installed(b)) or "torch"
    run = subprocess.run(["bash", str(out / "gpu_reference.sh"), "run", str(out), backends],
                         capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    for b in backends.split(","):
        if _installed(b):
            assert f"{b}: skipped: the {b} backend is not installed" in run.stdout
            continue
        line = next(ln for ln in run.stdout.splitlines() if ln.startswith(f"{b}: "))
        assert line.startswith(f"{b}: CPU ") and "match" in line and "MISMATCH" not in line
        doc = json.loads((out / "results" / f"{b}.json").read_text())
        assert doc["throughput"]["batch"] == 64 and doc["latency_ms"]["p50"] > 0 and doc["check"]["ok"]
