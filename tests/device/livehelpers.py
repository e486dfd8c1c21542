"""Helpers for the live-view tests: the shared real model and photos, a background camera script, an
HTTP client that reads multipart frames part by part."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import REPO
from tests.device.conftest import SCRIPTS

SHARED = Path(os.environ.get("EDGEKIT_SHARED", REPO.parent / "shared"))
MODEL = SHARED / "models" / "mobilenet_v1_0.25_128_quant.tflite"
LABELS = SHARED / "models" / "imagenet_labels.txt"
PHOTOS = SHARED / "datasets" / "ants-bees" / "val"
BOUNDARY = b"--edgekitframe"



def write_photo_video(path: Path, frames: int, size=(320, 240), hold: int = 10, fps: float = 30.0) -> Path:
    """An MJPG .avi of real photos (ants and bees), each held for `hold` frames."""
    import cv2

    photos = [cv2.resize(cv2.imread(str(p)), size) for p in sorted(PHOTOS.glob("*/*.jpg"))[::9]]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(photos[(i // hold) % len(photos)])
    writer.release()
    return path


class Script:
    """classify_camera.py --serve in the background; `url` once it says where it serves."""

    def __init__(self, *args: str, env=None) -> None:
        argv = [sys.executable, str(SCRIPTS / "classify_camera.py"), "--model", str(MODEL), "--labels", str(LABELS),
                "--headless", "--json", *args]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        self.err: list[str] = []
        self.serving = threading.Event()
        self.url = None
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line)
            if line.startswith("serving: "):
                self.url = line.split(" ", 1)[1].strip()
                self.serving.set()

    def wait_url(self, timeout: float = 60) -> str:
        assert self.serving.wait(timeout), "".join(self.err)
        return self.url

    def finish(self, timeout: float = 60):
        out = self.proc.stdout.read()
        self.proc.wait(timeout)
        return self.proc.returncode, out, "".join(self.err)


def conn(url: str) -> http.client.HTTPConnection:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=20)


def get(url: str, path: str):
    c = conn(url)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, r.getheader("Content-Type"), body


def read_parts(resp, n: int) -> list[bytes]:
    """n parts of a multipart/x-mixed-replace body, checked part by part."""
    parts = []
    while len(parts) < n:
        line = resp.fp.readline()
        if line in (b"\r\n", b"\n"):
            continue
        assert line.rstrip() == BOUNDARY, line
        headers = {}
        while True:
            h = resp.fp.readline().decode("ascii").strip()
            if not h:
                break
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        assert headers["content-type"] == "image/jpeg"
        jpeg = resp.fp.read(int(headers["content-length"]))
        assert jpeg[:3] == b"\xff\xd8\xff" and jpeg[-2:] == b"\xff\xd9"  # JPEG SOI ... EOI
        parts.append(jpeg)
    return parts



def open_stream(url: str, view: str = "camera"):
    """GET /stream.mjpg; the response, checked to be multipart."""
    c = conn(url)
    c.request("GET", f"/stream.mjpg?view={view}")
    resp = c.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == f"multipart/x-mixed-replace; boundary={BOUNDARY[2:].decode()}"
    return resp


def wait_line(proc: subprocess.Popen, prefix: str, timeout: float = 60) -> str:
    """The first stderr line of `proc` that contains `prefix` (stderr must be a text pipe)."""
    found: list = []
    done = threading.Event()

    def read():
        for line in proc.stderr:
            if prefix in line and not found:
                found.append(line)
                done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout) and found, f"no line with {prefix!r} within {timeout} s"
    return found[0]
