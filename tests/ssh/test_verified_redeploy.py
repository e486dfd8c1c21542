"""Issue 15 over a real sshd: a re-deploy checks the files on the device (not a marker) and re-sends
what differs; a kill -9 of the CLI leaves no ssh master, control folder or run folder behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekit.bundle.manifest import sha256_file
from tests.conftest import run_cli
from tests.procs import mentioning, snapshot

pytestmark = [pytest.mark.ssh, pytest.mark.tf]

FAST = ("--runs", "3", "--warmup", "1", "--min-seconds", "0")


def deploy(ek_env, bundle, device="pi"):
    proc = run_cli("deploy", str(bundle), "--device", device, "--json", env=ek_env)
    return json.loads(proc.stdout)["devices"][0]["result"]


def _corrupt_in_place(path: Path) -> None:
    """Overwrite 4 bytes in the middle, keeping size and mtime: only a checksum can tell."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(st.st_size // 2)
        old = f.read(4)
        f.seek(st.st_size // 2)
        f.write(bytes(b ^ 0xFF for b in old))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_redeploy_repairs_a_corrupted_model_and_a_deleted_script(sshd, add_device, ek_env, tiny_bundle, tmp_path):
    add_device("pi", sshd, workdir=tmp_path / "wd")
    first = deploy(ek_env, tiny_bundle)
    root = Path(first["root"])
    model = next((root / "bundle").glob("*_int8.tflite"))
    good = sha256_file(model)
    _corrupt_in_place(model)
    (root / "device_scripts" / "eval_images.py").unlink()
    again = deploy(ek_env, tiny_bundle)
    assert not again["skipped"] and again["root"] == first["root"]
    assert sorted(again["repaired"]) == sorted([f"bundle/{model.name}", "device_scripts/eval_images.py"])
    assert 0 < again["transferred_bytes"] < first["transferred_bytes"]  # only what differed travelled
    assert sha256_file(model) == good and (root / "device_scripts" / "eval_images.py").is_file()
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=root).returncode == 0
    # the human line says what happened
    proc = run_cli("deploy", str(tiny_bundle), "--device", "pi", env=ek_env)
    assert "verified on the device, nothing sent" in proc.stderr + proc.stdout
    third = deploy(ek_env, tiny_bundle)
    assert third["skipped"] and third["transferred_bytes"] == 0 and third["repaired"] == []


def test_a_corrupted_device_model_is_never_profiled(sshd, add_device, ek_env, tiny_bundle, tmp_path):
    """The model's sha256 is checked on the device right before the run: a copy damaged after the
    deploy is replaced first, so the profile measures the bundle's model."""
    add_device("pi", sshd, workdir=tmp_path / "wd")
    root = Path(deploy(ek_env, tiny_bundle)["root"])
    model = next((root / "bundle").glob("*_int8.tflite"))
    good = sha256_file(model)
    _corrupt_in_place(model)
    proc = run_cli("profile", str(tiny_bundle), "--device", "pi", *FAST, "--json", env=ek_env)
    assert sha256_file(model) == good
    assert "repaired" in proc.stderr and model.name in proc.stderr
    rows = json.loads(proc.stdout)
    assert {r["precision"] for r in rows} == {"int8", "float32"} and all(r["supported"] for r in rows)


def _control_dirs(pid: int) -> set[str]:
    """The ControlPath folders of the ssh processes below `pid`, read from each command line once."""
    return {
        a.split("=", 1)[1].rsplit("/", 1)[0]
        for _, cmd in snapshot(below=pid)
        for a in cmd.split()
        if a.startswith("ControlPath=")
    }


def _wait_until(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


@pytest.mark.slow
def test_kill_9_of_the_cli_leaves_nothing_behind_over_ssh(sshd, add_device, ek_env, tiny_bundle, tmp_path):
    """L7: the remote script stops, the ssh master ends within seconds, and the next connection
    removes the dead run's control folder (/tmp/ek-ssh-*) and its WORKDIR/runs/<id> on the device."""
    wd = tmp_path / "wd"
    add_device("pi", sshd, workdir=wd)
    args = ["profile", str(tiny_bundle), "--device", "pi", "--runs", "100000000", "--min-seconds", "600"]
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", *args], env={**os.environ, **ek_env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        started = _wait_until(
            lambda: bool(mentioning("profile_latency.py", str(wd))),
            120,
        )
        assert started, "the profile never started on the device"
        ctl = _control_dirs(proc.pid)
        assert len(ctl) == 1, ctl
        (ctl_dir,) = ctl
        run_dirs = list((wd / "runs").iterdir())
        assert len(run_dirs) == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # nothing of ours runs on: not the remote script, not an ssh client or master
    assert _wait_until(lambda: not mentioning(str(wd) + "/"), 20), "the remote script ran on"
    assert _wait_until(lambda: not mentioning(ctl_dir), 20), "the ssh master lived on"
    # the next connection cleans what the killed run left
    run_cli("profile", str(tiny_bundle), "--device", "pi", *FAST, "--json", env=ek_env)
    assert not Path(ctl_dir).exists()
    assert not any(p.exists() for p in run_dirs)
