"""Fixtures for the emulated-aarch64 tests: the arm64 userland, an SSH "Raspberry Pi" running it,
the bundles and the video they classify, and helpers that run a device script on either side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.ssh.sshd import SSHServer, find_sshd, keygen

SCRIPTS = REPO / "device_scripts"
RUNTIMES = ("ai_edge_litert", "tflite_runtime")  # what runs correctly under qemu 7.2 (README)


@dataclass(frozen=True)
class Userland:
    """What scripts/arm64_userland.sh printed (see its header)."""

    root: Path
    python: Path  # bare python3 (no numpy, no interpreter)
    python_litert: Path
    python_tflite: Path
    host_tflite_site: Path
    device_bin: Path
    wheels: Path
    build_s: int

    def python_for(self, runtime: str) -> Path:
        return self.python_litert if runtime == "ai_edge_litert" else self.python_tflite


def _missing(reason: str):
    # CI installs qemu-user-static (scripts/setup.sh), so there a missing piece is a failure
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def arm64() -> Userland:
    """Build (first run: about a minute, mostly downloads) or reuse the cached arm64 userland."""
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "arm64_userland.sh")], capture_output=True, text=True, timeout=900
    )
    if proc.returncode == 3:  # the script's "a prerequisite is missing" (qemu, apt, network)
        _missing(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, f"arm64_userland.sh failed:\n{proc.stdout}\n{proc.stderr}"
    v = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    return Userland(
        root=Path(v["ROOT"]),
        python=Path(v["PYTHON"]),
        python_litert=Path(v["PYTHON_LITERT"]),
        python_tflite=Path(v["PYTHON_TFLITE"]),
        host_tflite_site=Path(v["HOST_TFLITE_SITE"]),
        device_bin=Path(v["DEVICE_BIN"]),
        wheels=Path(v["WHEELS"]),
        build_s=int(v["BUILD_S"]),
    )


def host_python(runtime: str, arm64: Userland) -> tuple[list[str], dict]:
    """(argv, env) of the x86 reference for a runtime: this venv's LiteRT, or tflite-runtime 2.14 with
    numpy<2 from the userland's host site, ahead of the venv's numpy 2 on sys.path (the scripts then
    need `--runtime`, the venv's LiteRT being importable too)."""
    if runtime == "ai_edge_litert":
        return [sys.executable], {}
    return [sys.executable], {"PYTHONPATH": str(arm64.host_tflite_site)}


def run_script(python: list[str] | Path, script: str, *args: str, env: dict | None = None, timeout=300):
    """Run a device script with an interpreter (emulated or host) and return (JSON document, proc)."""
    argv = [str(python)] if isinstance(python, Path) else list(python)
    proc = subprocess.run(
        [*argv, str(SCRIPTS / script), *args, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{script} on {argv[0]} exited {proc.returncode}:\n{proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


@pytest.fixture(scope="session")
def biased_bundle(tmp_path_factory, tiny_bundle, digits_dir) -> Path:
    """The tiny bundle's model with a non-zero classifier bias, exported int8 (tests/arm/tinymodel.py)."""
    work = tmp_path_factory.mktemp("biased")
    keras_file = work / "biased.keras"
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("tinymodel.py")), str(tiny_bundle / "float_model.keras"),
         str(keras_file)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = work / "bundle"
    run_cli(
        "export", "--weights", str(keras_file), "--quantize", "int8", "--calibration", str(digits_dir),
        "--calibration-samples", "36", "-o", str(out), "--json",
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def digits_video(tmp_path_factory, digits_dir) -> Path:
    """A lossless (FFV1) .avi of 12 digit images at 64 px (so the scripts resize), written with OpenCV.

    Lossless, because the aarch64 wheel (OpenCV 4.11) and this venv's OpenCV decode MJPG differently
    (up to 2 levels): a lossy file would give the two sides different inputs."""
    import cv2
    import numpy as np
    from PIL import Image

    path = tmp_path_factory.mktemp("video") / "digits.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10, (64, 64))
    assert writer.isOpened()
    for f in sorted(digits_dir.rglob("*.png"))[::3]:
        rgb = np.asarray(Image.open(f).convert("RGB").resize((64, 64), Image.BILINEAR))
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


# --------------------------------------------------------------------------- the SSH "Raspberry Pi"


@dataclass
class EmulatedPiServer(SSHServer):
    """The tests' real sshd, with each session's PATH starting at the userland's device-bin: its
    `python3`, `uname` and `getconf` are then the emulated arm64 device's (sshd's SetEnv)."""

    device_bin: Path = field(default_factory=Path)

    def _config(self) -> Path:
        cfg = super()._config()
        path = f"{self.device_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        cfg.write_text(cfg.read_text() + f"SetEnv PATH={path}\n")
        return cfg


@pytest.fixture(scope="session")
def pi_sshd(tmp_path_factory, arm64):
    if find_sshd() is None:
        _missing("OpenSSH server not installed (bash scripts/setup.sh installs it as root)")
    key = keygen(tmp_path_factory.mktemp("pikeys") / "id_ed25519")
    server = EmulatedPiServer(
        tmp_path_factory.mktemp("pisshd"), key.with_suffix(".pub"), device_bin=arm64.device_bin
    )
    server.start()
    server.identity = key
    yield server
    server.stop()
