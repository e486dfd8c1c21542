"""`edgekit camera --device pi --preview` through a real sshd: the device serves its loopback only, an
`ssh -L` tunnel with the pinned host key brings the page to a local port, Ctrl-C ends it all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.device.livehelpers import LABELS, MODEL, get, open_stream, read_parts, wait_line, write_photo_video
from tests.procs import mentioning

from .sshd import free_port

pytestmark = [
    pytest.mark.ssh,
    pytest.mark.slow,
    pytest.mark.skipif(not MODEL.is_file(), reason=f"the shared real model is not at {MODEL}"),
]


def _device_scripts_running(workdir) -> list:
    return [p.pid for p in mentioning("classify_camera.py", str(workdir))]


def test_preview_through_a_real_sshd(sshd, add_device, ek_env, tmp_path):
    workdir = tmp_path / "pi home"
    add_device("pi", sshd, workdir=workdir)
    video = write_photo_video(tmp_path / "clip.avi", 600)
    port = free_port()
    log = tmp_path / "frames.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "camera", str(MODEL), "--labels", str(LABELS), "--device", "pi",
         "--source", str(video), "--realtime", "--preview", "--preview-port", str(port), "--log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **ek_env},
    )  # fmt: skip
    try:
        line = wait_line(proc, "live view: ", timeout=120)
        url = f"http://127.0.0.1:{port}/"
        assert url in line
        status, ctype, page = get(url, "/")
        assert status == 200 and ctype.startswith("text/html") and MODEL.name.encode() in page
        parts = read_parts(open_stream(url), 3)
        assert len(parts) == 3
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            latest = json.loads(get(url, "/api/latest")[2])
            if latest["frame"] is not None:
                break
            time.sleep(0.2)
        assert latest["top"] and latest["model"] == MODEL.name
        assert _device_scripts_running(workdir)  # it runs on the "device", under its workdir
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130) and "Traceback" not in err, err
    # everything ended: the tunnel's port is closed here, the script is gone there
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    deadline = time.monotonic() + 15
    while _device_scripts_running(workdir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _device_scripts_running(workdir)
    lines = log.read_text().splitlines()  # the frame log came back, every line whole
    assert lines and all(json.loads(ln)["top"] for ln in lines)


def test_preview_port_in_use_here(sshd, add_device, ek_env, tmp_path):
    add_device("pi", sshd)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "edgekit", "camera", str(MODEL), "--device", "pi", "--source",
             str(tmp_path), "--preview", "--preview-port", str(port)],
            capture_output=True, text=True, env={**os.environ, **ek_env}, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 2 and f"local port {port} is in use" in proc.stderr
    assert "Traceback" not in proc.stderr
