"""The live view (classify_camera.py --serve): a real video drives the script, a real HTTP client and a
headless Chromium watch it; a real ImageNet model (../shared) classifies real photos. No TensorFlow."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.device.conftest import last_json
from tests.device.livehelpers import (
    LABELS,
    MODEL,
    Script,
    conn,
    get,
    open_stream,
    read_parts,
    wait_line,
    write_photo_video,
)

PHASES = 15  # alternating without / with the slow viewer, starting and ending without
PHASE_S = 0.25

pytestmark = [
    pytest.mark.skipif(not MODEL.is_file(), reason=f"the shared real model is not at {MODEL}"),
    pytest.mark.tf,  # OpenCV and LiteRT ([tf] extra)
]


@pytest.fixture(scope="module")
def photo_video(tmp_path_factory) -> Path:
    return write_photo_video(tmp_path_factory.mktemp("video") / "photos.avi", 300)


def _log(path: Path) -> dict:
    return {ln["frame"]: ln for ln in map(json.loads, path.read_text().splitlines())}


def test_stream_latest_and_ctrl_c_with_a_client_connected(photo_video, tmp_path):
    import cv2

    log = tmp_path / "frames.jsonl"
    s = Script("--source", str(photo_video), "--realtime", "--serve", "127.0.0.1:0", "--log", str(log))
    url = s.wait_url()
    assert url.startswith("http://127.0.0.1:")
    latest = []
    for _ in range(5):
        status, ctype, body = get(url, "/api/latest")
        assert status == 200 and ctype == "application/json"
        latest.append(json.loads(body))
        time.sleep(0.1)
    # nothing but the three routes
    assert get(url, "/etc/passwd")[0] == 404 and get(url, "/stream.mjpg?view=other")[0] == 404
    assert get(url, "/api/latest/../../x")[0] == 404
    c = conn(url)
    c.request("GET", "/stream.mjpg")
    resp = c.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=edgekitframe"
    parts = read_parts(resp, 10)
    frame = cv2.imdecode(np.frombuffer(parts[-1], np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == (240, 320, 3)
    # the model's view: its input (128 px), scaled up for the page
    c2 = conn(url)
    c2.request("GET", "/stream.mjpg?view=model")
    model_view = cv2.imdecode(np.frombuffer(read_parts(c2.getresponse(), 1)[0], np.uint8), cv2.IMREAD_COLOR)
    assert model_view.shape == (256, 256, 3)
    c2.close()
    # Ctrl-C while the stream client is still connected
    s.proc.send_signal(signal.SIGINT)
    rc, out, err = s.finish()
    assert rc == 0 and "Traceback" not in err, err
    doc = last_json(out)
    assert doc["end_reason"] == "interrupted" and doc["frames"] < 300
    frames = _log(log)
    assert len(frames) == doc["frames"] == doc["log_lines"]  # every line complete
    for item in latest:  # /api/latest said what the log says for that frame
        if item["frame"] is None:
            continue
        line = frames[item["frame"]]
        assert [t["label"] for t in item["top"]] == [t["label"] for t in line["top"]]
        assert [t["score"] for t in item["top"]] == [t["score"] for t in line["top"]]
        assert item["latency_ms"] == line["latency_ms"]
        assert item["model"] == MODEL.name and item["byte_order"] == "BGR"
    assert any(item["frame"] is not None for item in latest)
    lv = doc["live_view"]
    assert lv["encoded_frames"] >= 11 and lv["sent_frames"] >= 11 and lv["max_clients"] >= 1
    assert doc["source"]["byte_order"] == "BGR"
    resp.fp.read()  # the server closed the stream at exit: the client sees its end, never hangs
    c.close()


@pytest.mark.parametrize("frames", ["all", "30"])
def test_a_storm_of_ctrl_c_never_loses_the_summary(photo_video, tmp_path, frames):
    """Ctrl-C every 20 ms from the moment the view serves until the process is gone: whether the loop
    ended on the first one or had already ended on its own (--max-frames 30), the late ones land while
    the view closes, the summary is written and the interpreter exits. None of them may kill it."""
    log = tmp_path / "f.jsonl"
    cap = ["--max-frames", frames] if frames != "all" else []
    s = Script("--source", str(photo_video), "--serve", "127.0.0.1:0", "--log", str(log), *cap)
    s.wait_url()
    sent = 0
    while s.proc.poll() is None:
        try:
            s.proc.send_signal(signal.SIGINT)
            sent += 1
        except ProcessLookupError:
            break
        time.sleep(0.02)
    rc, out, err = s.finish()
    assert rc == 0 and "Traceback" not in err, (sent, err)
    doc = last_json(out)
    assert doc["end_reason"] in ("interrupted", "max_frames") and sent >= 1
    assert len(_log(log)) == doc["frames"] == doc["log_lines"]


def test_no_viewer_means_no_encoding_and_lan_binding_warns(photo_video):
    s = Script("--source", str(photo_video), "--max-frames", "60", "--serve", "0.0.0.0:0")
    rc, out, err = s.finish()
    assert rc == 0, err
    assert "anyone on the network can watch" in err
    doc = last_json(out)
    assert doc["frames"] == 60 and doc["live_view"]["encoded_frames"] == 0
    assert doc["live_view"]["host"] == "0.0.0.0"


def test_port_in_use_is_one_line_and_no_log(photo_video, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        log = tmp_path / "f.jsonl"
        s = Script("--source", str(photo_video), "--serve", f"127.0.0.1:{port}", "--log", str(log))
        rc, out, err = s.finish()
    assert rc == 6 and out == ""
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("INFO:")]
    assert lines == [f"error: cannot serve the live view on 127.0.0.1:{port}: the port is in use (another live "
                     "view or program has it); pick another with --serve HOST:PORT"]  # fmt: skip
    assert not log.exists()  # nothing started, nothing half-written
    s = Script("--source", str(photo_video), "--serve", "127.0.0.1:http")
    rc, _, err = s.finish()
    assert rc == 2 and "--serve takes [HOST:]PORT" in err and "Traceback" not in err


def slow_viewer(url: str, stop: threading.Event, got: list) -> None:
    """Reads /stream.mjpg one frame a second through a 4 KiB receive buffer: the server's writes to
    it block within a frame, as with a viewer on a bad link."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(20)
    sock.connect((u.hostname, u.port))
    sock.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
    f = sock.makefile("rb")
    while f.readline() not in (b"\r\n", b""):  # status line and headers
        pass
    resp = type("R", (), {"fp": f})
    try:
        while not stop.is_set():
            got.extend(read_parts(resp, 1))
            stop.wait(1.0)
    except OSError:
        pass
    finally:
        f.close()  # the socket closes with its last file object
        sock.close()


def _viewer_phases(video: Path, log: Path) -> list:
    """One run of the script over `video`; the viewer on in every other phase. Per phase: (viewer on,
    share of the loop's wall time spent invoking the model: 1 = inference-bound), from the frame log."""
    s = Script("--source", str(video), "--threads", "1", "--serve", "127.0.0.1:0", "--log", str(log))
    url = s.wait_url()
    bounds = []  # (frame index at the start of a phase, viewer connected)
    got: list = []

    def latest_frame():
        try:
            return json.loads(get(url, "/api/latest")[2])["frame"] or 0
        except OSError:  # the video ended
            return None

    try:
        for phase in range(PHASES):
            stop = threading.Event()
            viewer = threading.Thread(target=slow_viewer, args=(url, stop, got), daemon=True)
            if phase % 2:
                viewer.start()
            bounds.append((latest_frame(), bool(phase % 2)))
            time.sleep(PHASE_S)
            stop.set()
            if phase % 2:
                viewer.join(10)  # gone before the next phase starts
        bounds.append((latest_frame(), None))
    finally:
        s.proc.send_signal(signal.SIGINT)
        rc, out, err = s.finish(timeout=120)
    assert rc == 0, err
    lv = last_json(out)["live_view"]
    assert got and lv["encoded_frames"] >= 10  # the viewer was served
    assert lv["max_clients"] == 1  # each viewer gone at the end of its phase
    frames = _log(log)
    phases = []
    for (a, on), (b, _) in zip(bounds, bounds[1:], strict=False):
        lines = [frames[i] for i in range(a + 1, b + 1) if i in frames] if None not in (a, b) else []
        wall = lines[-1]["t_s"] - lines[0]["t_s"] if len(lines) >= 10 else 0
        phases.append((on, sum(ln["latency_ms"] for ln in lines[1:]) / 1000 / wall if wall > 0 else None))
    return phases


@pytest.mark.slow
def test_a_slow_viewer_does_not_slow_the_loop(tmp_path):
    """A run over a long video, every frame classified as fast as the interpreter allows, while a
    viewer that reads one frame a second comes and goes. Each phase with the viewer is compared with
    the phases either side of it without (so load from other jobs falls on both alike): the median of
    those ratios of inference-bound shares stays >= 0.95. A shared machine's bursts can still swamp
    one run, so it is measured up to three times; a viewer that really held the loop fails all three."""
    # frames at the model's input size: decoding and preprocessing stay cheap, inference sets the pace
    video = write_photo_video(tmp_path / "long.avi", 8000, size=(128, 128), hold=1)  # outlasts the phases
    ratios = []
    for attempt in range(3):
        phases = _viewer_phases(video, tmp_path / f"f{attempt}.jsonl")
        paired = [
            phases[i][1] / ((phases[i - 1][1] + phases[i + 1][1]) / 2)
            for i in range(1, len(phases) - 1, 2)
            if None not in (phases[i - 1][1], phases[i][1], phases[i + 1][1])
        ]
        assert len(paired) >= 3, phases
        ratios.append(float(np.median(paired)))
        if ratios[-1] >= 0.95:
            break
    assert max(ratios) >= 0.95, ratios


@pytest.mark.browser
def test_page_in_chromium_shows_the_frame_and_labels(tmp_path):
    from tests.store.conftest import CHROMIUM_FLAGS, chromium

    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it with EDGEKIT_SYSTEM_DEPS=1)")
    import cv2

    video = write_photo_video(tmp_path / "still.avi", 900, hold=900)  # one photo, held: a still scene
    log = tmp_path / "f.jsonl"
    s = Script("--source", str(video), "--realtime", "--serve", "127.0.0.1:0", "--log", str(log))
    url = s.wait_url()
    try:
        while not log.exists() or not log.read_text().strip():
            time.sleep(0.05)
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,800",
                 "--hide-scrollbars"]  # fmt: skip
        dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True,
                             timeout=120).stdout  # fmt: skip
        artifacts = Path(os.environ.get("EDGEKIT_ARTIFACTS", tmp_path))
        artifacts.mkdir(parents=True, exist_ok=True)
        shot = artifacts / "liveview.png"
        subprocess.run([browser, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    finally:
        s.proc.send_signal(signal.SIGINT)
        rc, out, err = s.finish()
    assert rc == 0, err
    label = next(iter(_log(log).values()))["top"][0]["label"]  # a still scene: one top-1 throughout
    assert f'<span class="label">{label}</span>' in dom
    assert 'id="frame"' in dom and 'data-width="320"' in dom  # the <img> decoded a 320 px frame
    assert MODEL.name in dom and "ms</td>" in dom
    # what a person sees: the photo, drawn where the page puts the frame (640 px wide, at 12,12)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (800, 1280)
    photo = cv2.resize(cv2.VideoCapture(str(video)).read()[1], (640, 480))
    seen = img[12 + 140 : 12 + 480, 12 : 12 + 640].astype(np.float32)  # below the drawn labels
    diff = np.abs(seen - photo[140:].astype(np.float32)).mean()
    assert diff < 20, diff


@pytest.mark.slow
def test_preview_on_this_machine(photo_video, tmp_path):
    """`edgekit camera --preview` with this machine as the device: the script serves the local port."""
    from tests.ssh.sshd import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "camera", str(MODEL), "--labels", str(LABELS), "--source",
         str(photo_video), "--realtime", "--preview", "--preview-port", str(port), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "EDGEKIT_DB": "off"},
    )  # fmt: skip
    try:
        line = wait_line(proc, "live view: ", timeout=120)
        url = f"http://127.0.0.1:{port}/"
        assert url in line
        status, _, page = get(url, "/")
        assert status == 200 and MODEL.name.encode() in page
        assert len(read_parts(open_stream(url), 3)) == 3
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["end_reason"] == "interrupted" and doc["live_view"]["port"] == port
    assert doc["live_view"]["host"] == "127.0.0.1" and doc["live_view"]["sent_frames"] >= 3
