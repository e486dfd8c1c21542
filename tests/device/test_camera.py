"""classify_camera.py end to end on a real video written by the test, and `edgekit camera`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.device.conftest import SCRIPTS, int8_model, last_json, run_script, write_video
from tests.procs import mentioning

pytestmark = pytest.mark.tf  # the tiny bundle is exported with TensorFlow


def _lines(path):
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_every_frame_in_order_with_log_and_summary(tiny_bundle, digit_video, tmp_path):
    log = tmp_path / "frames.jsonl"
    doc = json.loads(
        run_cli("camera", str(tiny_bundle), "--source", str(digit_video), "--log", str(log), "--json").stdout
    )
    assert doc["schema_version"] == 1 and doc["kind"] == "camera"
    assert doc["frames"] == 48 and doc["dropped"] == 0 and doc["end_reason"] == "end_of_video"
    assert doc["source"]["kind"] == "file" and doc["source"]["width"] == 64
    assert sum(doc["top1_distribution"].values()) == 48
    lat = doc["latency_ms"]
    assert lat["p50"] <= lat["p90"] <= lat["p99"] and doc["fps"] > 0
    lines = _lines(log)
    assert [ln["frame"] for ln in lines] == list(range(48))
    assert doc["log"] == str(log) and doc["log_lines"] == 48
    for ln in lines:
        assert len(ln["top"]) == 3 and ln["latency_ms"] > 0
        scores = [t["score"] for t in ln["top"]]
        assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-3
    counts = {}
    for ln in lines:
        counts[ln["top"][0]["label"]] = counts.get(ln["top"][0]["label"], 0) + 1
    assert counts == doc["top1_distribution"]


def test_frames_classified_like_the_host(tiny_bundle, digit_video, tmp_path):
    """Top-1 per frame equals the desktop's prediction on the same decoded frame."""
    import cv2

    from edgekit.device_scripts import edgelib

    log = tmp_path / "f.jsonl"
    run_script("classify_camera.py", "--model", str(int8_model(tiny_bundle)), "--source", str(digit_video),
               "--log", str(log), "--max-frames", "16", "--headless")  # fmt: skip
    prep = json.loads((tiny_bundle / "manifest.json").read_text())["preprocessing"]
    m = edgelib.Model.from_file(str(int8_model(tiny_bundle)))
    cap = cv2.VideoCapture(str(digit_video))
    for ln in _lines(log):
        ok, frame = cap.read()
        assert ok
        x = edgelib.preprocess(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), prep)[None]
        assert ln["top"][0]["index"] == int(np.argmax(m.predict(x)[0]))
    cap.release()


@pytest.mark.slow
def test_max_frames_and_realtime(tiny_bundle, digit_video):
    doc = json.loads(run_cli("camera", str(tiny_bundle), "--source", str(digit_video), "--max-frames", "7",
                             "--json").stdout)  # fmt: skip
    assert doc["frames"] == 7 and doc["end_reason"] == "max_frames"
    doc = last_json(
        run_script("classify_camera.py", "--model", str(int8_model(tiny_bundle)), "--source", str(digit_video),
                   "--realtime", "--headless", "--json").stdout
    )  # fmt: skip
    assert doc["settings"]["realtime"] is True and doc["end_reason"] == "end_of_video"
    assert doc["frames"] + doc["dropped"] <= doc["captured"] == 48
    assert doc["duration_s"] >= 1.0  # paced at 30 FPS: 48 frames take 1.6 s


def test_bad_sources(tiny_bundle, tmp_path):
    proc = run_cli("camera", str(tiny_bundle), "--source", str(tmp_path / "missing.avi"), check=False)
    assert proc.returncode == 3 and "does not exist" in proc.stderr
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"RIFF but not really a video" * 10)
    proc = run_cli("camera", str(tiny_bundle), "--source", str(junk), check=False)
    assert proc.returncode == 3 and "cannot open video" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("camera", str(tiny_bundle), "--camera", "57", check=False)
    assert proc.returncode == 6 and "cannot open camera 57" in proc.stderr
    proc = run_cli("camera", str(tiny_bundle), check=False)
    assert proc.returncode == 2 and "--source" in proc.stderr


def test_corrupt_model(tmp_path, digit_video, bare_model):
    bad = tmp_path / "bad.tflite"
    data = bare_model.read_bytes()
    bad.write_bytes(data[: len(data) // 3])  # truncated
    proc = run_script("classify_camera.py", "--model", str(bad), "--source", str(digit_video), check=False)
    assert proc.returncode == 4 and "error:" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_ctrl_c_writes_the_summary_and_a_complete_log(tiny_bundle, tmp_path, digit_images):
    video = write_video(tmp_path / "long.avi", digit_images, 300)  # 10 s at 30 FPS
    log = tmp_path / "f.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "classify_camera.py"), "--model", str(int8_model(tiny_bundle)),
         "--source", str(video), "--realtime", "--headless", "--log", str(log), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    doc = last_json(out)
    assert doc["end_reason"] == "interrupted" and 5 <= doc["frames"] < 300
    assert len(_lines(log)) == doc["frames"]  # every line complete


@pytest.mark.slow
def test_lost_stream_is_retried_then_reported(tiny_bundle, tmp_path, digit_images):
    """A stream whose source disappears: reconnects with back-off, then exit 6 with the log intact."""
    video = write_video(tmp_path / "cam.avi", digit_images, 20)
    log = tmp_path / "f.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "classify_camera.py"), "--model", str(int8_model(tiny_bundle)),
         "--source", video.as_uri(), "--retries", "2", "--headless", "--log", str(log), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (log.exists() and log.read_text().strip()):
        time.sleep(0.01)
    video.unlink()  # the "camera" goes away; frames already opened still arrive
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 6, err
    assert "reconnecting" in err and "did not come back after 2 retries" in err.splitlines()[-1]
    doc = last_json(out)
    assert doc["end_reason"] == "camera_lost" and doc["frames"] >= 1
    assert len(_lines(log)) == doc["frames"]


@pytest.mark.slow
def test_ctrl_c_on_the_cli_reaches_the_device_script(tiny_bundle, tmp_path, digit_images):
    """SIGINT to `edgekit camera` only: the runner passes it on and still prints the summary and log."""
    import os

    # 30 s of video at --realtime: the interrupt lands long before its end even on a cold, loaded machine
    video = write_video(tmp_path / "long.avi", digit_images, 300, fps=10.0)
    log = tmp_path / "cli.jsonl"
    scratch = tmp_path / "tmp"  # the runner's scratch folder lands here, where the script logs
    scratch.mkdir()
    env = {**os.environ, "EDGEKIT_DB": "off", "TMPDIR": str(scratch)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "camera", str(tiny_bundle), "--source", str(video), "--realtime",
         "--log", str(log), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.stat().st_size for p in scratch.glob("edgekit-run-*/predictions.jsonl")):
            break  # the device script is classifying
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["end_reason"] == "interrupted" and doc["frames"] >= 1
    assert len(_lines(log)) == doc["frames"]


@pytest.mark.slow
def test_ctrl_c_on_profile_exits_130(tiny_bundle):
    import os


    # batch 256: the device script's cap of 100000 timed runs lasts minutes on any CPU, so the run is
    # still measuring when Ctrl-C lands (at batch 1 a fast CPU finished the tiny model in 4 s)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "profile", str(tiny_bundle), "--batch", "256", "--min-seconds", "60",
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "EDGEKIT_DB": "off"},
    )  # fmt: skip

    def measuring() -> bool:  # the device script runs (each setting then times for 60 s)
        return bool(mentioning("profile_latency.py", below=proc.pid))

    deadline = time.monotonic() + 120
    while not measuring() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None and measuring(), proc.communicate()[1]
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert out == ""
