"""`devices check` and `devices setup`: runtime choice, the probe over SSH, an offline venv set-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.devices.check import assess, choose_runtime, parse_probe, parse_runtime
from edgekit.errors import UsageError
from tests.conftest import cache_lock, run_cli

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


@pytest.mark.parametrize(
    "spec, package, version, first_requirement",
    [
        ("ai-edge-litert==2.1.0", "ai-edge-litert", "2.1.0", "ai-edge-litert==2.1.0"),
        ("tflite-runtime==2.14.0", "tflite-runtime", "2.14.0", "tflite-runtime==2.14.0"),
        ("tflite-runtime", "tflite-runtime", None, "tflite-runtime"),
        ("ai_edge_litert == 2.1", "ai-edge-litert", "2.1", "ai-edge-litert==2.1"),
    ],
)
def test_runtime_override_with_an_exact_pin(spec, package, version, first_requirement):
    assert parse_runtime(spec) == (package, version)
    choice = choose_runtime("aarch64", "3.11.2", "glibc 2.36", override=spec)
    assert (choice.package, choice.version, choice.requirements[0]) == (package, version, first_requirement)
    assert ("numpy<2" in choice.requirements) == (package == "tflite-runtime")
    assert f"{first_requirement} requested with --runtime" == choice.reason


@pytest.mark.parametrize(
    "spec",
    ["onnxruntime", "ai-edge-litert>=2.1", "ai-edge-litert==2.x", "tflite-runtime==2.14.0; rm -rf ~", ""],
)
def test_runtime_override_rejects_anything_else(spec):
    with pytest.raises(UsageError, match="optionally pinned exactly"):
        parse_runtime(spec)


def test_bad_runtime_is_a_usage_error_before_any_connection(ek_env):
    for cmd in ("setup", "check"):
        proc = run_cli("devices", cmd, "pi", "--runtime", "ai-edge-litert>=2", env=ek_env, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "--runtime must be ai-edge-litert or tflite-runtime" in proc.stderr
        assert "device 'pi'" not in proc.stderr  # judged before the inventory is read


# What the probe prints on a Raspberry Pi 4 with the 32-bit Raspberry Pi OS Bookworm userland on its
# (default) 64-bit kernel: the kernel, and so `uname -m` and platform.machine(), say aarch64; the
# interpreter is a 32-bit armhf build (pointers of 32 bits), which only armv7l wheels fit.
ARMHF_ON_ARM64_PROBE = """\
uname_arch=aarch64
kernel=Linux 6.6.51+rpt-rpi-v8
os=Raspbian GNU/Linux 12 (bookworm)
glibc=glibc 2.36
disk_free_kb=24000000
mem_total_kb=3884000
mem_available_kb=3300000
cpu_model=Raspberry Pi 4 Model B Rev 1.5
cpu_cores=4
temp_millic=48686
sha256sum=/usr/bin/sha256sum
@@python={"machine": "aarch64", "pointer_bits": 32, "python": "3.11.2", "executable": "/usr/bin/python3", "implementation": "CPython", "in_venv": false, "modules": {"ai_edge_litert": {"ok": false, "error": "ModuleNotFoundError: No module named 'ai_edge_litert'"}, "tflite_runtime": {"ok": false, "error": "x"}, "numpy": {"ok": true, "version": "1.24.2"}, "cv2": {"ok": false, "error": "x"}, "PIL": {"ok": true, "version": "9.4.0"}, "tensorflow": {"ok": false, "version": null}}, "libc": "glibc-2.36", "venv_module": true}
"""


def test_a_32_bit_userland_on_a_64_bit_kernel_is_armv7l():
    facts, pyinfo = parse_probe(ARMHF_ON_ARM64_PROBE)
    assert facts["uname_arch"] == "aarch64" and facts["arch"] == "armv7l" and facts["arch_source"] == "python"
    assert facts["temperature_c"] == 48.7
    report = assess("pi", "python3", "~/edgekit", facts, pyinfo).to_dict()
    rec = report["recommended"]
    assert rec["package"] == "tflite-runtime" and "tflite-runtime==2.14.0" in rec["requirements"]
    assert "armv7l" in rec["reason"] and "ai-edge-litert has no 32-bit ARM wheel" in rec["reason"]
    (fix,) = [f for f in report["fixes"] if "devices setup pi`" in f]
    assert "tflite-runtime==2.14.0, numpy<2" in fix and "no 32-bit ARM wheel" in fix
    # the same device with a 64-bit userland stays aarch64 and gets LiteRT
    facts64, py64 = parse_probe(ARMHF_ON_ARM64_PROBE.replace('"pointer_bits": 32', '"pointer_bits": 64'))
    assert facts64["arch"] == "aarch64"
    assert assess("pi", "python3", "~", facts64, py64).recommended["package"] == "ai-edge-litert"
    # no usable Python: the kernel's word is all there is
    facts_bare, _ = parse_probe(ARMHF_ON_ARM64_PROBE.split("@@python=")[0] + "@@python=\n")
    assert facts_bare["arch"] == "aarch64" and facts_bare["arch_source"] == "uname"


@pytest.mark.ssh
@pytest.mark.tf  # the "device" is this venv's Python, which must hold LiteRT
def test_check_reports_the_device(sshd, add_device, ek_env):
    add_device("pi", sshd)
    add_device("bare", sshd, python="/no/such/python3")
    out = json.loads(run_cli("devices", "check", "pi,bare", "--json", env=ek_env).stdout)
    pi, bare = (d["result"] for d in out["devices"])
    assert pi["reachable"] and pi["facts"]["arch"] == os.uname().machine
    assert pi["facts"]["uname_arch"] == os.uname().machine and pi["facts"]["arch_source"] == "python"
    assert pi["python"]["pointer_bits"] == 64 and pi["python"]["machine"] == os.uname().machine
    assert pi["facts"]["mem_total_kb"] > 0 and pi["facts"]["disk_free_kb"] > 0 and pi["facts"]["cpu_model"]
    assert pi["python"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert pi["runtime"]["package"] == "ai_edge_litert" and pi["python"]["modules"]["numpy"]["ok"]
    assert bare["python"] is None and bare["runtime"] is None
    assert any("sudo apt install python3 python3-venv" in f for f in bare["fixes"])
    text = run_cli("devices", "check", "bare", env=ek_env).stdout
    assert "fix: Python `/no/such/python3` is not usable" in text
    assert f"arch       {os.uname().machine} (from uname; kernel uname -m: {os.uname().machine})" in text


@pytest.fixture(scope="session")
def device_wheels() -> Path:
    """Wheels for an offline `devices setup` (downloaded from PyPI once, then cached)."""
    folder = CACHE / f"wheels-device-py{sys.version_info.major}{sys.version_info.minor}"
    with cache_lock(folder):  # parallel workers download once
        if not (folder / ".complete").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "-d", str(folder), "ai-edge-litert", "numpy",
                 "pillow"],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert proc.returncode == 0, f"pip download failed (needs PyPI once): {proc.stderr[-500:]}"
            (folder / ".complete").write_text("ai-edge-litert numpy pillow\n")
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
    # an exact pin reaches pip: the installed version pinned is already set up; another one is asked of
    # pip (offline here, so it fails, naming the pinned requirement) and nothing is changed
    have = first["runtime_version"]
    pinned = [*args, "--runtime", f"ai-edge-litert=={have}"]
    same = json.loads(run_cli(*pinned, env=ek_env).stdout)
    assert not same["changed"] and same["requirements"][0] == f"ai-edge-litert=={have}"
    other = run_cli(*args, "--runtime", "ai-edge-litert==0.0.1", env=ek_env, check=False)
    assert other.returncode != 0 and "Traceback" not in other.stderr
    assert "ai-edge-litert==0.0.1" in other.stderr and "pip install on 'pi' failed" in other.stderr
    probe = subprocess.run([str(venv_py), "-c", "import ai_edge_litert.interpreter"], capture_output=True)
    assert probe.returncode == 0
