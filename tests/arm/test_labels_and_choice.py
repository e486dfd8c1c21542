"""No qemu needed: how an emulated CPU is recognised, what a 32-bit ARM device is told, and what the
userland script says without qemu."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from edgekit.device_scripts import edgelib
from edgekit.devices.check import choose_runtime, device_arch
from tests.conftest import REPO, run_cli


def test_wrapper_variable_marks_the_run_emulated(monkeypatch):
    monkeypatch.setenv("EDGEKIT_EMULATED", "qemu-aarch64")
    cpu = edgelib.cpu_info()
    assert cpu["emulated"] == "qemu-aarch64"
    assert cpu["model"].endswith("[emulated qemu-aarch64: latency not meaningful]")


def test_cpuinfo_of_another_architecture_gives_qemu_away(monkeypatch):
    monkeypatch.delenv("EDGEKIT_EMULATED", raising=False)
    x86_flags = {"fpu", "sse", "sse2", "avx2"}
    arm_flags = {"fp", "asimd", "evtstrm", "crc32"}
    assert edgelib.emulation("aarch64", x86_flags) == "aarch64 on an x86 CPU"
    assert edgelib.emulation("armv7l", x86_flags) == "armv7l on an x86 CPU"
    assert edgelib.emulation("x86_64", arm_flags) == "x86_64 on an ARM CPU"
    # real hardware: the flags fit the architecture
    assert edgelib.emulation("aarch64", arm_flags) is None
    assert edgelib.emulation("x86_64", x86_flags) is None
    assert edgelib.emulation("aarch64", set()) is None  # unreadable /proc/cpuinfo: no claim


def test_this_machine_is_not_labelled(monkeypatch):
    monkeypatch.delenv("EDGEKIT_EMULATED", raising=False)
    cpu = edgelib.cpu_info()
    assert cpu["emulated"] is None and "emulated" not in cpu["model"]


def test_armv7l_bookworm_gets_tflite_runtime_and_is_told_why():
    # what `devices check` sees on a 32-bit userland: a 64-bit kernel, a 32-bit Python
    arch = device_arch("aarch64", {"machine": "aarch64", "pointer_bits": 32, "python": "3.11.2"})
    assert arch == "armv7l"
    choice = choose_runtime(arch, "3.11.2", "glibc 2.36")
    assert choice.package == "tflite-runtime"
    assert "numpy<2" in choice.requirements and "tflite-runtime==2.14.0" in choice.requirements
    assert "ai-edge-litert has no 32-bit ARM wheel" in choice.reason


def test_armv7l_without_a_fitting_wheel_is_told_what_to_do():
    choice = choose_runtime("armv7l", "3.9.2", "glibc 2.31")  # Raspberry Pi OS Bullseye, 32-bit
    assert choice.package is None
    assert "no 32-bit ARM wheel of ai-edge-litert" in choice.reason and "64-bit" in choice.reason


def test_aarch64_bookworm_gets_litert():
    choice = choose_runtime("aarch64", "3.11.2", "glibc 2.36")
    assert choice.package == "ai-edge-litert"


def test_userland_script_without_qemu_says_how_to_get_it(tmp_path):
    """One line, exit 3 (the fixtures skip locally / fail in CI on it), and nothing written."""
    bin_dir = tmp_path / "bin"  # a PATH with what the script needs before its checks, and no qemu
    bin_dir.mkdir()
    os.symlink(shutil.which("dirname"), bin_dir / "dirname")
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [shutil.which("bash"), str(REPO / "scripts" / "arm64_userland.sh")],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path), "EDGEKIT_ARM64_CACHE": str(cache)},
        timeout=60,
    )
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "apt-get install qemu-user-static" in proc.stderr
    assert not cache.exists()


@pytest.mark.tf
def test_report_marks_emulated_latency_not_meaningful(tmp_path, tiny_bundle, digits_dir):
    """Real runs on this machine, one of them under a device name whose device scripts are told they
    run emulated (EDGEKIT_EMULATED, as the qemu wrapper does): the stored results say so, and the
    report greys that latency and keeps it off the Pareto front and the budget pick."""
    env = {"EDGEKIT_HOME": str(tmp_path), "EDGEKIT_CONFIG": "", "EDGEKIT_DB": str(tmp_path / "r.db")}
    emu = {**env, "EDGEKIT_EMULATED": "qemu-aarch64"}
    run_cli("devices", "add", "emu", "--local", "--json", env=env)
    fast = ["--runs", "3", "--warmup", "1", "--min-seconds", "0", "--json"]
    rows = json.loads(run_cli("profile", str(tiny_bundle), "--device", "emu", *fast, env=emu).stdout)
    assert rows and all(r["emulated"] is True and not r["fastest"] for r in rows)
    real = json.loads(run_cli("profile", str(tiny_bundle), "--device", "local", *fast, env=env).stdout)
    assert all(r["emulated"] is False for r in real) and any(r["fastest"] for r in real)
    data = ["--data", str(digits_dir), "--json"]
    ev = json.loads(run_cli("eval", str(tiny_bundle), "--device", "emu", *data, env=emu).stdout)
    assert ev["device"]["emulated"] is True and ev["device_result"]["emulated"] is True
    human = run_cli("eval", str(tiny_bundle), "--device", "emu", "--data", str(digits_dir), env=emu).stdout
    assert "latency not meaningful" in human
    run_cli("eval", str(tiny_bundle), "--device", "local", *data, env=env)

    report = json.loads(run_cli("report", "--json", "--budget-ms", "1e9", env=env).stdout)
    by_device = {}
    for m in report["models"]:
        for r in m["rows"]:
            by_device.setdefault(r["device"], []).append(r)
    assert all(r["emulated"] and "not meaningful" in r["latency_note"] for r in by_device["emu"])
    assert not any(r["emulated"] for r in by_device["local"])
    pareto = {t["device"]: t for t in report["pareto"]}
    assert pareto["emu"]["front"] == [] and pareto["emu"]["best_within_budget"] is None
    assert pareto["emu"]["excluded_emulated"]
    assert pareto["local"]["front"] and pareto["local"]["best_within_budget"] is not None
    assert not pareto["local"]["excluded_emulated"]
    lat = {d["device"]: d for d in report["latency"]}
    assert lat["emu"]["emulated"] and not lat["local"]["emulated"]
    assert report["environments"]
    assert all(e["emulated"] is (e["device"] == "emu") for e in report["environments"])

    html_file, md_file = tmp_path / "r.html", tmp_path / "r.md"
    run_cli("report", "-o", str(html_file), "--budget-ms", "1e9", env=env)
    run_cli("report", "--format", "md", "-o", str(md_file), "--budget-ms", "1e9", env=env)
    html, md = html_file.read_text(), md_file.read_text()
    n_emu_rows = len(by_device["emu"])
    assert html.count('<tr class="emulated">') == n_emu_rows
    # every latency-derived cell is greyed: p50/p90/p99/img/s and the ratios to the reference (× ref p50, × ref img/s)
    assert html.count('emu" title="emulated: latency not meaningful"') == 6 * n_emu_rows
    assert "not plotted, not ranked" in html and "Not ranked (emulated: latency not meaningful)" in html
    assert (
        md.count("(emulated: latency not meaningful)") >= n_emu_rows and "† measured on an emulated CPU" in md
    )
    emu_md_rows = [ln for ln in md.splitlines() if ln.startswith("| emu (emulated")]
    assert len(emu_md_rows) == n_emu_rows and all(" †" in ln for ln in emu_md_rows)
