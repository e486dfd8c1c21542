"""profile / eval / camera with --device over real SSH: same results as a local run, failures, fleets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.procs import mentioning

from .sshd import SSHServer

pytestmark = [pytest.mark.ssh, pytest.mark.tf, pytest.mark.slow]


@pytest.fixture(scope="module")
def digit_clip(tmp_path_factory, digits_dir) -> Path:
    """A real MJPG video whose 24 frames are real digit images."""
    import cv2

    files = sorted(digits_dir.glob("*/*.png"))[6:30]  # two classes, 24 frames
    path = tmp_path_factory.mktemp("clip") / "digit clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 64))
    for f in files:
        writer.write(cv2.resize(cv2.imread(str(f)), (64, 64), interpolation=cv2.INTER_LINEAR))
    writer.release()
    return path


def _json(proc):
    return json.loads(proc.stdout)


def test_eval_profile_camera_over_ssh_match_local(
    sshd, add_device, ek_env, tiny_bundle, digits_dir, digit_clip, tmp_path
):
    add_device("pi", sshd)
    # eval: the same interpreter on the same inputs gives the same predictions, image by image
    remote = _json(
        run_cli("eval", str(tiny_bundle), "--device", "pi", "--data", str(digits_dir), "--json", env=ek_env)
    )
    local = _json(
        run_cli(
            "eval", str(tiny_bundle), "--device", "local", "--data", str(digits_dir), "--json", env=ek_env
        )
    )
    assert remote["device"]["name"] == "pi" and remote["device"]["kind"] == "ssh"
    assert remote["tflite"]["n"] == local["tflite"]["n"] == 36
    assert remote["tflite"]["top1"] == local["tflite"]["top1"]
    r_preds = {Path(p["path"]).name: p["pred"] for p in remote["device_result"]["predictions"]}
    l_preds = {Path(p["path"]).name: p["pred"] for p in local["device_result"]["predictions"]}
    assert r_preds == l_preds and len(r_preds) == 36
    # profile: every precision and setting measured, labelled with the device
    rows = _json(
        run_cli(
            "profile",
            str(tiny_bundle),
            "--device",
            "pi",
            "--runs",
            "3",
            "--warmup",
            "1",
            "--min-seconds",
            "0",
            "--threads",
            "1,2",
            "--json",
            env=ek_env,
        )
    )
    assert {(r["precision"], r["threads"]) for r in rows} == {
        (p, t) for p in ("int8", "float32") for t in (1, 2)
    }
    assert all(r["device"] == "pi" and r["supported"] and r["latency_ms"]["p50"] > 0 for r in rows)
    # camera on a video file: same per-frame labels as locally, frame log pulled back
    logs = {}
    docs = {}
    for dev in ("pi", "local"):
        logs[dev] = tmp_path / f"{dev}.jsonl"
        docs[dev] = _json(
            run_cli(
                "camera",
                str(tiny_bundle),
                "--device",
                dev,
                "--source",
                str(digit_clip),
                "--log",
                str(logs[dev]),
                "--json",
                env=ek_env,
            )
        )
    assert docs["pi"]["frames"] == docs["local"]["frames"] == 24
    assert docs["pi"]["top1_distribution"] == docs["local"]["top1_distribution"]
    frames = {d: [json.loads(x)["top"][0] for x in logs[d].read_text().splitlines()] for d in logs}
    assert len(frames["pi"]) == 24 and [f["label"] for f in frames["pi"]] == [
        f["label"] for f in frames["local"]
    ]
    # every run landed in the results database with its device
    runs = _json(run_cli("runs", "list", "--json", env=ek_env))
    runs = runs["runs"] if isinstance(runs, dict) else runs
    assert {r["device"] for r in runs} >= {"pi", "local"}


def test_device_script_failure_is_reported(sshd, add_device, ek_env, tiny_bundle, tmp_path):
    add_device("pi", sshd)
    fake = tmp_path / "not a video.avi"
    fake.write_text("this is not a video")
    proc = run_cli(
        "camera", str(tiny_bundle), "--device", "pi", "--source", str(fake), env=ek_env, check=False
    )
    # the device script's own verdict (unreadable input: exit 3) comes back, named with the device
    assert proc.returncode == 3, proc.stderr
    assert "on pi: cannot open video" in proc.stderr and "Traceback" not in proc.stderr
    # a broken interpreter path on the device: a clear device error, not a hang
    add_device("broken", sshd, python="/nonexistent/python3")
    proc = run_cli(
        "profile", str(tiny_bundle), "--device", "broken", "--runs", "2", env=ek_env, check=False, timeout=120
    )
    assert proc.returncode == 6 and "broken" in proc.stderr and "Traceback" not in proc.stderr


def test_fleet_of_three_with_one_down(user_key, add_device, ek_env, tiny_bundle, digits_dir, tmp_path):
    servers = []
    try:
        for i in range(3):
            root = tmp_path / f"srv{i}"
            root.mkdir()
            servers.append(SSHServer(root, user_key.with_suffix(".pub")).start())
            add_device(f"pi{i}", servers[-1], workdir=tmp_path / f"wd{i}")
        servers[1].stop()
        proc = run_cli(
            "deploy", str(tiny_bundle), "--device", "pi0,pi1,pi2", "--json", env=ek_env, check=False
        )
        assert proc.returncode == 9, proc.stderr
        out = {d["device"]: d for d in _json(proc)["devices"]}
        assert out["pi0"]["ok"] and out["pi2"]["ok"] and not out["pi1"]["ok"]
        assert "connection refused" in out["pi1"]["error"]
        assert (tmp_path / "wd0" / "current").is_symlink() and (tmp_path / "wd2" / "current").is_symlink()
        proc = run_cli(
            "profile",
            str(tiny_bundle),
            "--all",
            "--runs",
            "3",
            "--warmup",
            "1",
            "--min-seconds",
            "0",
            "--json",
            env=ek_env,
            check=False,
        )
        assert proc.returncode == 9 and "1 of 3 devices failed" in proc.stderr and "pi1" in proc.stderr
        by_dev = {d["device"]: d for d in _json(proc)["devices"]}
        for name in ("pi0", "pi2"):  # partial results kept, each labelled with its device
            assert by_dev[name]["ok"] and {r["device"] for r in by_dev[name]["result"]} == {name}
        assert by_dev["pi1"]["exit_code"] == 6
        proc = run_cli(
            "eval", str(tiny_bundle), "--all", "--data", str(digits_dir), "--json", env=ek_env, check=False
        )
        assert proc.returncode == 9
        evals = {d["device"]: d for d in _json(proc)["devices"]}
        assert (
            evals["pi0"]["result"]["tflite"]["top1"] == evals["pi2"]["result"]["tflite"]["top1"] is not None
        )
        assert evals["pi0"]["result"]["device"]["name"] == "pi0" and not evals["pi1"]["ok"]
        stored = _json(run_cli("runs", "list", "--json", env=ek_env))
        stored = stored["runs"] if isinstance(stored, dict) else stored
        assert {"pi0", "pi2"} <= {r["device"] for r in stored} and "pi1" not in {r["device"] for r in stored}
    finally:
        for s in servers:
            s.stop()


def test_ctrl_c_on_a_remote_profile_stops_it_on_the_device(sshd, add_device, ek_env, tiny_bundle, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time


    wd = tmp_path / "ctrl c wd"
    add_device("pi", sshd, workdir=wd)
    args = ["profile", str(tiny_bundle), "--device", "pi", "--runs", "100000000", "--min-seconds", "600"]
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", *args], env={**os.environ, **ek_env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip

    def remote_scripts():
        return mentioning("profile_latency.py", str(wd))

    deadline = time.monotonic() + 120
    while not remote_scripts() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert remote_scripts(), "the profile never started on the device"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    deadline = time.monotonic() + 10
    while remote_scripts() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not remote_scripts(), "profile_latency.py kept running on the device after Ctrl-C"


def test_eval_from_a_csv_over_ssh(sshd, add_device, ek_env, tiny_bundle, digits_dir, tmp_path):
    """A CSV names images on the desktop (relative and absolute): they travel with it, rows rewritten."""
    import shutil

    add_device("pi", sshd)
    folder = tmp_path / "my set"
    (folder / "pics").mkdir(parents=True)
    rows = []
    for i, img in enumerate(sorted(digits_dir.glob("*/*.png"))[::4]):
        if i % 2:
            rows.append(f"{img},{img.parent.name}")  # absolute, elsewhere on the desktop
        else:
            shutil.copy(img, folder / "pics" / f"{i} {img.name}")
            rows.append(f"pics/{i} {img.name},{img.parent.name}")  # relative to the CSV
    csv_file = folder / "list.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    remote = _json(
        run_cli("eval", str(tiny_bundle), "--device", "pi", "--data", str(csv_file), "--json", env=ek_env)
    )
    local = _json(
        run_cli("eval", str(tiny_bundle), "--data", str(csv_file), "--device", "local", "--json", env=ek_env)
    )
    assert remote["tflite"]["n"] == local["tflite"]["n"] == len(rows)
    assert [p["pred"] for p in remote["device_result"]["predictions"]] == [
        p["pred"] for p in local["device_result"]["predictions"]
    ]
    assert remote["tflite"]["top1"] == local["tflite"]["top1"]
