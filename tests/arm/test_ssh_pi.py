"""An SSH "Raspberry Pi" whose python3, uname and getconf are the emulated arm64 Bookworm's.

The real sshd of tests/ssh (its PATH set to the userland's device-bin) on 127.0.0.1: `devices check`
sees aarch64, Python 3.11 and glibc 2.36; `devices setup` builds a venv there with the interpreter
that works under qemu; deploy, profile, eval and camera then run end to end, and what comes back
says the device was emulated and its latency is not meaningful.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.conftest import run_cli

from .conftest import host_python, run_script

pytestmark = [pytest.mark.emulated, pytest.mark.ssh, pytest.mark.slow, pytest.mark.tf]

LABEL = "latency not meaningful"


@pytest.fixture(scope="module")
def pi(pi_sshd, arm64, tmp_path_factory):
    """`edgekit devices add pi` in an isolated EDGEKIT_HOME; the device's python3 is the emulated one."""
    home = tmp_path_factory.mktemp("ekhome")
    env = {"EDGEKIT_HOME": str(home), "EDGEKIT_CONFIG": "", "EDGEKIT_DB": str(home / "results.db")}
    run_cli(
        "devices", "add", "pi", "--ssh", pi_sshd.address, "--identity", str(pi_sshd.identity),
        "--host-key", pi_sshd.host_key(), "--python", str(arm64.device_bin / "python3"),
        "--workdir", str(tmp_path_factory.mktemp("pi") / "edgekit"), "--json",
        env=env,
    )  # fmt: skip
    return env


def _check(env) -> dict:
    doc = json.loads(run_cli("devices", "check", "pi", "--json", env=env).stdout)
    (device,) = doc["devices"]
    assert device["ok"], device
    return device["result"]


def test_check_reports_an_aarch64_bookworm_python(pi):
    r = _check(pi)
    assert r["facts"]["arch"] == "aarch64" and r["facts"]["arch_source"] == "python"
    assert r["facts"]["uname_arch"] == "aarch64" and r["python"]["pointer_bits"] == 64
    assert r["facts"]["glibc"] == "glibc 2.36"
    assert r["python"]["python"].startswith("3.11.") and r["python"]["libc"] == "glibc-2.36"
    assert r["runtime"] is None  # a bare device: nothing importable yet
    assert r["recommended"]["package"] == "ai-edge-litert"
    assert any("devices setup pi" in fix for fix in r["fixes"])


@pytest.fixture(scope="module")
def set_up(pi, arm64):
    """`devices setup` with the interpreter that works under qemu 7.2 (see README): the emulated pip
    only sees the userland's wheel cache, whose ai-edge-litert is 2.1.0."""
    out = run_cli(
        "devices", "setup", "pi", "--runtime", "ai-edge-litert==2.1.0", "--camera",
        "--python", str(arm64.device_bin / "python3"), "--json",
        env=pi, timeout=1200,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_setup_installs_the_interpreter_and_is_idempotent(pi, set_up, arm64):
    assert set_up["changed"] is True
    assert set_up["runtime"] == "ai-edge-litert" and set_up["runtime_version"] == "2.1.0"
    assert set_up["requirements"][0] == "ai-edge-litert==2.1.0"  # the pin, as pip was given it
    assert set_up["reason"] == "ai-edge-litert==2.1.0 requested with --runtime"
    assert set_up["python_version"].startswith("3.11.")
    again = json.loads(
        run_cli("devices", "setup", "pi", "--runtime", "ai-edge-litert==2.1.0", "--camera",
                "--python", str(arm64.device_bin / "python3"), "--json", env=pi).stdout
    )  # fmt: skip
    assert again["changed"] is False
    r = _check(pi)
    assert r["runtime"] == {"package": "ai_edge_litert", "version": "2.1.0"}
    assert r["python"]["in_venv"] and r["python"]["modules"]["cv2"]["ok"]
    assert r["fixes"] == []


def test_deploy_profile_eval_camera_end_to_end(
    pi, set_up, biased_bundle, digits_dir, digits_video, tmp_path, arm64
):
    deployed = json.loads(run_cli("deploy", str(biased_bundle), "--device", "pi", "--json", env=pi).stdout)
    assert all(d["ok"] for d in deployed["devices"]), deployed

    rows = json.loads(
        run_cli("profile", str(biased_bundle), "--device", "pi", "--runs", "3", "--warmup", "1",
                "--min-seconds", "0", "--json", env=pi).stdout
    )  # fmt: skip
    assert rows and all(r["device"] == "pi" and r["runtime_version"] == "2.1.0" for r in rows)
    assert all(r["emulated"] is True and LABEL in r["latency_note"] for r in rows)
    assert not any(r["fastest"] for r in rows)  # no "int8 is fastest here" from emulated timings
    text = run_cli("profile", str(biased_bundle), "--device", "pi", "--runs", "2", "--warmup", "0",
                   "--min-seconds", "0", env={**pi, "COLUMNS": "200"}).stdout  # fmt: skip
    assert "emulated (qemu-aarch64): latency not meaningful" in text
    assert f"[emulated qemu-aarch64: {LABEL}]" in text  # the CPU model's label, not eaten as markup

    ev = json.loads(run_cli("eval", str(biased_bundle), "--device", "pi", "--data", str(digits_dir), "--json",
                            env=pi).stdout)  # fmt: skip
    device_doc = ev["device_result"]
    assert ev["device"]["emulated"] is True and device_doc["emulated"] is True
    cpu = device_doc["environment"]["cpu"]
    assert cpu["machine"] == "aarch64" and cpu["emulated"] == "qemu-aarch64" and LABEL in cpu["model"]
    argv, env = host_python("ai_edge_litert", arm64)
    model = str(next(biased_bundle.glob("*_int8.tflite")))
    x86, _ = run_script(argv, "eval_images.py", "--model", model, "--data", str(digits_dir), env=env)
    assert [p["pred"] for p in device_doc["predictions"]] == [p["pred"] for p in x86["predictions"]]
    assert ev["tflite"]["top1"] == x86["top1"]

    log = tmp_path / "frames.jsonl"
    cam = json.loads(
        run_cli("camera", str(biased_bundle), "--device", "pi", "--source", str(digits_video), "--log", str(log),
                "--json", env=pi).stdout
    )  # fmt: skip
    assert cam["frames"] == 12 and cam["environment"]["cpu"]["emulated"] == "qemu-aarch64"
    assert cam["emulated"] is True and cam["device"]["emulated"] is True and LABEL in cam["latency_note"]
    x86_log = tmp_path / "x86.jsonl"
    run_script(argv, "classify_camera.py", "--model", model, "--source", str(digits_video), "--headless",
               "--log", str(x86_log), env=env)  # fmt: skip
    top1 = [
        [json.loads(line)["top"][0]["index"] for line in f.read_text().splitlines()] for f in (log, x86_log)
    ]
    assert top1[0] == top1[1] and len(top1[0]) == 12

    # the database keeps the label with every run, and the report shows it next to the latency
    with sqlite3.connect(pi["EDGEKIT_DB"]) as db:
        stored = db.execute("SELECT kind, result_json FROM runs WHERE device = 'pi'").fetchall()
    assert {kind for kind, _ in stored} >= {"profile", "eval"}
    for _, blob in stored:
        assert "qemu-aarch64" in blob and LABEL in blob
    report = tmp_path / "report.md"
    run_cli("report", "--format", "md", "-o", str(report), env=pi)
    assert LABEL in report.read_text()
    data = json.loads(run_cli("report", "--json", "--budget-ms", "1e9", env=pi).stdout)
    rows = [r for m in data["models"] for r in m["rows"] if r["device"] == "pi"]
    assert rows and all(r["emulated"] is True for r in rows)
    assert any(r["p50_ms"] and r["top1"] is not None for r in rows)  # it would be on the front if real
    (pareto,) = [t for t in data["pareto"] if t["device"] == "pi"]
    assert pareto["front"] == [] and pareto["best_within_budget"] is None and pareto["excluded_emulated"]
