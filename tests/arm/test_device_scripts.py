"""The device scripts on an emulated aarch64 Raspberry Pi OS Bookworm Python, against x86.

Each script runs under qemu with each interpreter that works there, on the same inputs as an x86
run of the same interpreter: LiteRT (2.1.0 on aarch64, this venv's on x86) is bit-exact; tflite-runtime
2.14 agrees with its own x86 build. Timings under emulation are labelled and never compared.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from .conftest import RUNTIMES, SCRIPTS, host_python, run_script

pytestmark = [pytest.mark.emulated, pytest.mark.tf, pytest.mark.slow]

EXPECTED_VERSION = {"ai_edge_litert": "2.1.0", "tflite_runtime": "2.14.0"}
SCORE_ATOL = 1e-6  # softmax of identical int8 outputs, in numpy 1.26 (arm) vs numpy 2 (x86)


def _int8(bundle) -> str:
    return str(next(bundle.glob("*_int8.tflite")))


def _assert_emulated_aarch64(doc: dict, runtime: str) -> None:
    cpu = doc["environment"]["cpu"]
    assert cpu["machine"] == "aarch64"
    assert cpu["emulated"] == "qemu-aarch64"
    assert "latency not meaningful" in cpu["model"]
    assert doc["environment"]["python"].startswith("3.11.")
    assert doc["runtime"]["name"] == runtime
    assert doc["runtime"]["version"] == EXPECTED_VERSION[runtime]


def test_userland_is_bookworm_python_on_aarch64(arm64):
    code = "import platform, json; print(json.dumps([platform.machine(), platform.python_version(), platform.libc_ver()]))"
    out = subprocess.run([arm64.python, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    machine, version, libc = json.loads(out.stdout)
    assert machine == "aarch64" and version.startswith("3.11.") and libc == ["glibc", "2.36"]
    # the bare device has no numpy: `devices setup` is what installs it
    bare = subprocess.run([arm64.python, "-c", "import numpy"], capture_output=True, text=True, timeout=120)
    assert bare.returncode != 0 and "No module named 'numpy'" in bare.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_eval_predictions_match_x86(arm64, biased_bundle, digits_dir, runtime):
    model = _int8(biased_bundle)
    arm, _ = run_script(
        arm64.python_for(runtime), "eval_images.py", "--model", model, "--data", str(digits_dir)
    )
    argv, env = host_python(runtime, arm64)
    x86, _ = run_script(argv, "eval_images.py", "--model", model, "--data", str(digits_dir), "--runtime", runtime,
                        env=env)  # fmt: skip
    _assert_emulated_aarch64(arm, runtime)
    assert x86["environment"]["cpu"]["emulated"] is None
    assert arm["n"] == x86["n"] == 36 and arm["top1"] == x86["top1"]
    assert [p["pred"] for p in arm["predictions"]] == [p["pred"] for p in x86["predictions"]]
    for a, b in zip(arm["predictions"], x86["predictions"], strict=True):
        assert [i for i, _ in a["top"]] == [i for i, _ in b["top"]]
        np.testing.assert_allclose([s for _, s in a["top"]], [s for _, s in b["top"]], atol=SCORE_ATOL)
    # the predictions vary (a constant classifier would agree trivially)
    assert len({p["pred"] for p in arm["predictions"]}) >= 2


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_camera_on_a_video_matches_x86(arm64, biased_bundle, digits_video, tmp_path, runtime):
    model = _int8(biased_bundle)
    common = ("--model", model, "--source", str(digits_video), "--headless", "--top-k", "3")
    arm_log, x86_log = tmp_path / "arm.jsonl", tmp_path / "x86.jsonl"
    arm, _ = run_script(arm64.python_for(runtime), "classify_camera.py", *common, "--log", str(arm_log))
    argv, env = host_python(runtime, arm64)
    run_script(argv, "classify_camera.py", *common, "--log", str(x86_log), "--runtime", runtime, env=env)
    _assert_emulated_aarch64(arm, runtime)
    a = [json.loads(line) for line in arm_log.read_text().splitlines()]
    b = [json.loads(line) for line in x86_log.read_text().splitlines()]
    assert len(a) == len(b) == 12  # every frame of the file, in order, none dropped
    assert [r["frame"] for r in a] == list(range(12))
    assert [r["top"][0]["index"] for r in a] == [r["top"][0]["index"] for r in b]
    for ra, rb in zip(a, b, strict=True):  # identical frames in -> identical scores
        np.testing.assert_allclose(
            [t["score"] for t in ra["top"]], [t["score"] for t in rb["top"]], atol=1e-4
        )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_profile_runs_and_says_its_latency_is_not_a_devices(arm64, biased_bundle, runtime):
    doc, proc = run_script(
        arm64.python_for(runtime), "profile_latency.py", "--model", _int8(biased_bundle),
        "--threads", "1,2", "--warmup", "1", "--runs", "3", "--min-seconds", "0",
    )  # fmt: skip
    _assert_emulated_aarch64(doc, runtime)
    configs = doc["configurations"]
    assert [(c["threads"], c["batch"]) for c in configs] == [(1, 1), (2, 1)]
    assert all(c["runs"] >= 3 and c["latency_ms"]["p50"] > 0 for c in configs)


def _raw_outputs(python, env, model: str, inputs: str, runtime: str) -> np.ndarray:
    """The interpreter's own output tensors (before any dequantization) for each input image."""
    code = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import edgelib\n"
        "m = edgelib.Model.from_file(sys.argv[2], runtime=sys.argv[4]); x = np.load(sys.argv[3])\n"
        "out = [m.invoke_raw(m.quantize_input(x[i:i + 1]))[0] for i in range(len(x))]\n"
        "sys.stdout.write(np.stack(out).astype(np.float64).tobytes().hex())\n"
    )
    argv = [str(python)] if not isinstance(python, list) else python
    proc = subprocess.run(
        [*argv, "-c", code, str(SCRIPTS), model, inputs, runtime],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.frombuffer(bytes.fromhex(proc.stdout), dtype=np.float64)


@pytest.mark.parametrize(
    ("runtime", "bundle_fixture", "precision", "exact"),
    [
        ("ai_edge_litert", "tiny_bundle", "int8", True),
        ("ai_edge_litert", "tiny_bundle", "float32", False),  # NEON vs AVX float sums: argmax + atol
        ("tflite_runtime", "biased_bundle", "int8", True),
    ],
)
def test_raw_outputs_match_x86(
    arm64, digits_dir, tmp_path, request, runtime, bundle_fixture, precision, exact
):
    from edgekit.device_scripts import edgelib

    bundle = request.getfixturevalue(bundle_fixture)
    model = str(next(bundle.glob(f"*_{precision}.tflite")))
    prep = json.loads((bundle / "manifest.json").read_text())["preprocessing"]
    x = np.stack(
        [edgelib.preprocess(edgelib.decode_image(p), prep) for p in edgelib.list_images(str(digits_dir))]
    )
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    arm = _raw_outputs(arm64.python_for(runtime), dict(os.environ), model, str(tmp_path / "x.npy"), runtime)
    argv, extra = host_python(runtime, arm64)
    x86 = _raw_outputs(argv, {**os.environ, **extra}, model, str(tmp_path / "x.npy"), runtime)
    arm, x86 = arm.reshape(len(x), -1), x86.reshape(len(x), -1)
    if exact:
        np.testing.assert_array_equal(arm, x86)
    else:
        np.testing.assert_allclose(arm, x86, atol=1e-4)
        assert (arm.argmax(1) == x86.argmax(1)).all()


def test_tflite_runtime_on_arm_crashes_on_int8_fc_without_bias(arm64, tiny_bundle):
    """Pins a finding (README): tflite-runtime 2.14's ARM build (gemmlowp) dereferences a missing bias
    of an int8 per-channel FULLY_CONNECTED; an untrained model's all-zero bias is dropped by the
    converter. The x86 build of the same package runs the same file."""
    model = _int8(tiny_bundle)
    arm = subprocess.run(
        [arm64.python_tflite, str(SCRIPTS / "edgelib.py"), "probe", model],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # SIGSEGV: the wrapper execs qemu, which re-raises the guest's signal on itself
    assert arm.returncode == -11, (arm.returncode, arm.stderr[-500:])
    argv, env = host_python("tflite_runtime", arm64)
    code = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import edgelib\n"
        "m = edgelib.Model.from_file(sys.argv[2], runtime='tflite_runtime')\n"
        "print(m.invoke_raw(m.quantize_input(np.zeros(m.input_shape, np.float32))).shape)\n"
    )
    x86 = subprocess.run(
        [*argv, "-c", code, str(SCRIPTS), model],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert x86.returncode == 0 and x86.stdout.strip() == "(1, 3)", x86.stderr[-500:]
