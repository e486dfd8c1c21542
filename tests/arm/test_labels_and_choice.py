"""No qemu needed: how an emulated CPU is recognised, what a 32-bit ARM device is told, and what the
userland script says without qemu."""

from __future__ import annotations

import os
import shutil
import subprocess

from edgekit.device_scripts import edgelib
from edgekit.devicecheck import choose_runtime
from tests.conftest import REPO


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
    choice = choose_runtime("armv7l", "3.11.2", "glibc 2.36")
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
