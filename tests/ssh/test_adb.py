"""Android/adb: what can be tested without a phone, i.e. command construction and parsing real
`benchmark_model` output recorded from public reports (see data/README.md for the sources)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.devices.benchmark_model import benchmark_argv, parse_benchmark_output, to_configuration
from edgekit.devices.targets.adb import ADBTarget
from edgekit.devices.targets.base import DeviceSpec, make_target
from edgekit.errors import DeviceError

DATA = Path(__file__).parent / "data"


def test_parse_recorded_output_peak_memory():
    p = parse_benchmark_output((DATA / "benchmark_model_centernet_aarch64.txt").read_text())
    assert p["count"] == 50 and p["threads"] == 4 and p["warmup_count"] == 3
    assert p["latency_ms"]["mean"] == pytest.approx(211.509)
    assert (p["latency_ms"]["min"], p["latency_ms"]["max"]) == (
        pytest.approx(210.383),
        pytest.approx(213.942),
    )
    assert p["latency_ms"]["std"] == pytest.approx(0.760)
    assert p["init_ms"] == pytest.approx(2.725) and p["first_inference_ms"] == pytest.approx(228.12)
    assert p["warmup_avg_ms"] == pytest.approx(216.727)
    assert p["model_size_mb"] == pytest.approx(9.35767)
    assert p["memory_mb"] == {"kind": "peak", "init": 4.02344, "overall": 38.2773}
    assert not p["xnnpack"]
    row = to_configuration(p)
    assert row["images_per_s"] == pytest.approx(1000 / 211.509) and row["peak_rss_mb"] == 38.2773
    assert row["latency_ms"]["p50"] is None  # the tool prints no percentiles: not invented
    json.dumps(row)


def test_parse_recorded_output_xnnpack_memory_delta():
    p = parse_benchmark_output((DATA / "benchmark_model_xnnpack_rpi.txt").read_text())
    assert p["xnnpack"] and p["threads"] == 4 and p["graph"] == "yolo_best_recall_int8_static.tflite"
    assert p["latency_ms"]["mean"] == pytest.approx(55.0432) and p["count"] == 50
    assert p["memory_mb"]["kind"] == "delta" and to_configuration(p)["peak_rss_mb"] is None


def test_parse_garbage_is_a_device_error():
    with pytest.raises(DeviceError, match="no timings.*not found"):
        parse_benchmark_output("STARTING!\n/data/local/tmp/benchmark_model: not found\n")


def test_benchmark_argv():
    argv = benchmark_argv(
        "/data/local/tmp/benchmark_model",
        "/data/local/tmp/edgekit/m.tflite",
        threads=2,
        runs=30,
        warmup_runs=3,
        min_seconds=0.5,
        xnnpack=False,
    )
    assert argv[0] == "/data/local/tmp/benchmark_model"
    assert "--graph=/data/local/tmp/edgekit/m.tflite" in argv and "--num_threads=2" in argv
    assert "--num_runs=30" in argv and "--use_xnnpack=false" in argv and "--min_secs=0.5" in argv


def test_shell_line_survives_the_phone_shell(tmp_path):
    """adb shell hands one line to the phone's sh: our quoting must give back the exact argv."""
    fake_adb = tmp_path / "adb"
    fake_adb.write_text("")
    target = make_target(DeviceSpec("phone", "adb", "R58M123", options={"adb": str(fake_adb)}))
    assert isinstance(target, ADBTarget)
    weird = ["/data/local/tmp/edge kit/model's.tflite", "--x=$HOME", "a;b", "`id`", '"q"']
    argv = target.shell_argv(
        [sys.executable, "-c", "import json,sys; print(json.dumps(sys.argv[1:]))", *weird]
    )
    assert argv[:4] == [str(fake_adb), "-s", "R58M123", "shell"] and len(argv) == 5
    out = subprocess.run(["sh", "-c", argv[4]], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == weird
    assert target.adb_argv("push", "a b", "/data/local/tmp/x") == [
        str(fake_adb),
        "-s",
        "R58M123",
        "push",
        "a b",
        "/data/local/tmp/x",
    ]


@pytest.mark.skipif(bool(__import__("shutil").which("adb")), reason="an adb binary is installed here")
def _have_adbutils() -> bool:
    import importlib.util

    return importlib.util.find_spec("adbutils") is not None


@pytest.mark.tf
@pytest.mark.skipif(_have_adbutils(), reason="adbutils bundles an adb binary here")
def test_profile_on_adb_device_without_adb_says_what_to_install(ek_env, tiny_bundle):
    from tests.conftest import run_cli

    run_cli(
        "devices", "add", "phone", "--adb", "R58M123", "--benchmark-model", "/data/local/tmp/benchmark_model",
        env=ek_env,
    )  # fmt: skip
    model = next(tiny_bundle.glob("*_int8.tflite"))
    proc = run_cli(
        "profile", str(model), "--device", "phone", env={**ek_env, "PATH": "/usr/bin:/bin"}, check=False
    )
    assert proc.returncode == 8, proc.stderr
    assert "no adb binary found" in proc.stderr and "platform-tools" in proc.stderr


@pytest.mark.tf
@pytest.mark.skipif(not _have_adbutils(), reason="needs the adb binary bundled with adbutils (dev extra)")
def test_real_adb_with_no_phone_attached_is_a_device_error(ek_env, tiny_bundle):
    """The real adb binary (adbutils' bundled one) and its real answer when the phone is not there."""
    import adbutils

    from tests.conftest import run_cli

    run_cli("devices", "add", "phone", "--adb", "EDGEKIT-NO-SUCH-PHONE", "--benchmark-model", "/data/local/tmp/bm",
            env=ek_env)  # fmt: skip
    model = next(tiny_bundle.glob("*_int8.tflite"))
    try:
        proc = run_cli("profile", str(model), "--device", "phone", env={**ek_env, "PATH": "/usr/bin:/bin"},
                       check=False, timeout=120)  # fmt: skip
    finally:  # the adb server that call started
        subprocess.run([adbutils.adb_path(), "kill-server"], capture_output=True, timeout=30)
    assert proc.returncode == 6, proc.stderr
    assert (
        "EDGEKIT-NO-SUCH-PHONE" in proc.stderr
        and "adb devices" in proc.stderr
        and "Traceback" not in proc.stderr
    )
