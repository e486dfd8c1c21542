"""`devices check` and `devices setup`: runtime choice, the probe over SSH, an offline venv set-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.devicecheck import choose_runtime
from edgekit.errors import UsageError
from tests.conftest import run_cli

CACHE = Path(os.environ.get("EDGEKIT_TEST_CACHE", Path.home() / ".cache" / "edgekit-tests"))


@pytest.mark.parametrize(
    "arch, python, glibc, package, why",
    [
        ("aarch64", "3.11.2", "glibc 2.36", "ai-edge-litert", "64-bit ARM/x86"),  # Pi OS Bookworm 64-bit
        ("aarch64", "3.9.2", "glibc 2.31", "ai-edge-litert", "Python 3.9-3.14"),  # Bullseye 64-bit
        ("x86_64", "3.13.1", "glibc 2.39", "ai-edge-litert", "wheels"),
        ("aarch64", "3.8.10", "glibc 2.35", "tflite-runtime", "no Python 3.8 wheel"),
        ("aarch64", "3.8.10", "glibc 2.31", None, "no prebuilt"),  # tflite-runtime 2.14 needs glibc 2.34
        ("armv7l", "3.11.2", "glibc 2.36", "tflite-runtime", "no 32-bit ARM wheel"),  # Bookworm 32-bit
        ("armv7l", "3.9.2", "glibc 2.31", None, "64-bit Raspberry Pi OS"),  # Bullseye 32-bit
        ("riscv64", "3.11.2", "glibc 2.36", None, "architecture"),
    ],
)
def test_choose_runtime(arch, python, glibc, package, why):
    choice = choose_runtime(arch, python, glibc)
    assert choice.package == package
    assert why in choice.reason and arch in choice.reason
    if package == "tflite-runtime":
        assert "numpy<2" in choice.requirements


def test_runtime_override():
    assert choose_runtime("armv7l", "3.9", None, override="tflite-runtime").package == "tflite-runtime"
    assert "--runtime" in choose_runtime("x86_64", "3.11", None, override="ai-edge-litert").reason
    with pytest.raises(UsageError):
        choose_runtime("x86_64", "3.11", None, override="onnxruntime")


@pytest.mark.ssh
def test_check_reports_the_device(sshd, add_device, ek_env):
    add_device("pi", sshd)
    add_device("bare", sshd, python="/no/such/python3")
    out = json.loads(run_cli("devices", "check", "pi,bare", "--json", env=ek_env).stdout)
    pi, bare = (d["result"] for d in out["devices"])
    assert pi["reachable"] and pi["facts"]["arch"] == os.uname().machine
    assert pi["facts"]["mem_total_kb"] > 0 and pi["facts"]["disk_free_kb"] > 0 and pi["facts"]["cpu_model"]
    assert pi["python"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert pi["runtime"]["package"] == "ai_edge_litert" and pi["python"]["modules"]["numpy"]["ok"]
    assert bare["python"] is None and bare["runtime"] is None
    assert any("sudo apt install python3 python3-venv" in f for f in bare["fixes"])
    text = run_cli("devices", "check", "bare", env=ek_env).stdout
    assert "fix: Python `/no/such/python3` is not usable" in text


@pytest.fixture(scope="session")
def device_wheels() -> Path:
    """Wheels for an offline `devices setup` (downloaded from PyPI once, then cached)."""
    folder = CACHE / f"wheels-device-py{sys.version_info.major}{sys.version_info.minor}"
    if not any(folder.glob("ai_edge_litert-*.whl")):
        folder.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "-d",
                str(folder),
                "ai-edge-litert",
                "numpy",
                "pillow",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"pip download failed (needs PyPI once): {proc.stderr[-500:]}"
    return folder


@pytest.mark.ssh
@pytest.mark.slow
def test_setup_creates_a_venv_offline_and_is_idempotent(sshd, add_device, ek_env, device_wheels, tmp_path):
    wd = tmp_path / "pi home"
    add_device("pi", sshd, workdir=wd, python="python3")
    base = sys._base_executable  # the device's "system" Python (a venv can't be made from a venv's)
    args = ["devices", "setup", "pi", "--python", base, "--find-links", str(device_wheels), "--json"]
    first = json.loads(run_cli(*args, env=ek_env, timeout=600).stdout)
    assert first["changed"] and first["runtime"] == "ai-edge-litert" and first["runtime_version"]
    assert "64-bit ARM/x86" in first["reason"]
    venv_py = wd / "venv" / "bin" / "python"
    assert venv_py.exists() and first["python"] == str(venv_py)
    probe = subprocess.run(
        [str(venv_py), "-c", "import ai_edge_litert.interpreter, numpy, PIL"], capture_output=True
    )
    assert probe.returncode == 0
    again = json.loads(run_cli(*args, env=ek_env).stdout)
    assert not again["changed"]
    # the inventory now runs device scripts with the venv's Python
    shown = json.loads(run_cli("devices", "show", "pi", "--json", env=ek_env).stdout)
    assert shown["python"] == str(venv_py)
    checked = json.loads(run_cli("devices", "check", "pi", "--json", env=ek_env).stdout)["devices"][0][
        "result"
    ]
    assert checked["runtime"]["package"] == "ai_edge_litert" and checked["python"]["in_venv"]
