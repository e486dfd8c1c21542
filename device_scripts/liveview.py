"""A live view of the camera loop in the browser, served from the device (standard library + OpenCV).

    classify_camera.py ... --serve [HOST:]PORT [--serve-fps 15]

Routes, and nothing else (404):
  /                   the page: live frame, top-k with scores, inference ms, FPS, CPU temperature and
                      throttling where readable, the model, a switch between camera and model input
  /stream.mjpg        multipart/x-mixed-replace JPEG frames with the overlay drawn in
                      (?view=model: the input the network gets, un-normalised, scaled up)
  /api/latest         the latest frame's result as JSON

The view never slows inference: the loop only hands over references (`publish`, one tuple
assignment, no copy, no lock); a separate encoder thread draws and encodes at most `fps` times a
second, and only while a stream client is connected; each client takes the newest JPEG when it is
ready for one, so a slow or stalled client loses frames instead of holding anything up.
"""

from __future__ import annotations

import html
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # a sibling, imported as a script is

from liveview_page import PAGE as _PAGE

VIEWS = ("camera", "model")
BOUNDARY = "edgekitframe"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CLIENT_TIMEOUT_S = 10.0  # a client that takes no bytes for this long is dropped
THERMAL_EVERY_S = 2.0
SEND_BUFFER_BYTES = 64 * 1024  # vcgencmd is a subprocess: read it at most this often, never in the loop


class ServeError(Exception):
    """The server cannot start (port in use, address not on this machine, bad [HOST:]PORT)."""


def parse_address(text: str) -> tuple[str, int]:
    """`[HOST:]PORT` -> (host, port); host defaults to 127.0.0.1, `[::1]:8080` for IPv6."""
    text = str(text).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        value = int(port)
    except ValueError:
        raise ServeError(f"--serve takes [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080; received {text!r}") from None
    if not 0 <= value <= 65535:
        raise ServeError(f"--serve port must be in 0..65535; received {value}")
    return host, value


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


# --------------------------------------------------------------------------- pictures


def model_input_rgb(x: np.ndarray, quant: tuple, mean, std) -> np.ndarray:
    """The model's input tensor (1, H, W, C) back to RGB uint8 pixels: what the network sees."""
    a = np.asarray(x[0], dtype=np.float32)
    scale, zp = quant
    if scale:
        a = (a - zp) * scale
    a = a * np.asarray(std, np.float32)[: a.shape[-1]] + np.asarray(mean, np.float32)[: a.shape[-1]]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def draw_overlay(cv2, img: np.ndarray, result: dict) -> np.ndarray:
    """Top-k, inference ms and FPS drawn on a BGR image (in place; the image is ours)."""
    lines = [f"{t['label']} {t['score']:.2f}" for t in result.get("top", [])]
    fps = result.get("fps")
    lines.append(f"{result.get('latency_ms', 0):.1f} ms  {fps or 0:.1f} FPS")
    scale = max(0.4, min(1.2, img.shape[1] / 640))
    step = int(24 * scale) + 4
    for i, text in enumerate(lines):
        org = (8, step * (i + 1))
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 255, 0), 1, cv2.LINE_AA)
    return img


# --------------------------------------------------------------------------- the hub


class LiveView:
    """Server, encoder and the latest result; `publish` is all the loop ever calls.

    Bound at construction (so a port in use fails before anything else starts), serving after
    `start(...)`: `to_bgr(frame)` turns a captured frame into BGR for drawing and JPEG (the source's
    byte order), `model_view(x)` a model input into RGB pixels, `thermal()` -> {"temperature_c", ...}.
    """

    def __init__(self, address: str, *, fps: float = 15.0) -> None:
        import cv2

        self.cv2 = cv2
        self.host, port = parse_address(address)
        self.fps = float(fps)
        self.to_bgr = lambda frame: frame
        self.model_view = None
        self.thermal = dict
        self.info: dict = {}
        self.title = "edgekit live view"
        self.latest = None  # (seq, frame, model input, result tuple): replaced whole, never mutated
        self._seq = 0
        self.cond = threading.Condition()
        self.clients = {v: 0 for v in VIEWS}
        self.jpegs: dict = {}  # view -> (seq, frame index, JPEG bytes)
        self.encoded = 0
        self.sent = 0
        self.max_clients = 0
        self.stop_event = threading.Event()
        self._thermal = ({}, -THERMAL_EVERY_S)
        self.server = _bind(self.host, port, self)
        self.port = self.server.server_address[1]
        self._threads: list = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self, *, to_bgr, model_view, thermal, info: dict, title: str) -> LiveView:
        self.to_bgr, self.model_view, self.thermal = to_bgr, model_view, thermal
        self.info, self.title = dict(info), title
        self._threads = [
            threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                             name="liveview-http", daemon=True),
            threading.Thread(target=self._encode_loop, name="liveview-encoder", daemon=True),
        ]  # fmt: skip
        for t in self._threads:
            t.start()
        return self

    # ----------------------------------------------------------------- the loop's side

    def publish(self, frame, x, index: int, top: list, latency_ms: float, fps, t_s: float) -> None:
        """Called once per classified frame by the loop: a tuple assignment, nothing more."""
        self._seq += 1
        self.latest = (self._seq, frame, x, (index, top, latency_ms, fps, t_s))

    # ----------------------------------------------------------------- results

    def result(self) -> dict:
        latest = self.latest
        doc = {"schema_version": 1, "kind": "live", **self.info, "frame": None, "top": []}
        if latest is not None:
            index, top, latency_ms, fps, t_s = latest[3]
            doc.update(
                frame=int(index),
                t_s=round(t_s, 6),
                latency_ms=round(latency_ms, 4),
                fps=round(fps, 3) if fps else None,
                top=[{"label": lab, "index": int(i), "score": round(float(s), 6)} for lab, i, s in top],
            )
        doc.update(self._thermal_state())
        with self.cond:
            doc["clients"] = sum(self.clients.values())
        return doc

    def _thermal_state(self) -> dict:
        state, at = self._thermal
        now = time.monotonic()
        if now - at > THERMAL_EVERY_S:
            try:
                state = dict(self.thermal() or {})
            except Exception:
                state = {}
            self._thermal = (state, now)
        return state

    def summary(self) -> dict:
        return {
            "url": self.url,
            "host": self.host,
            "port": self.port,
            "max_fps": self.fps,
            "encoded_frames": self.encoded,
            "sent_frames": self.sent,
            "max_clients": self.max_clients,
        }

    # ----------------------------------------------------------------- encoding

    def _encode_loop(self) -> None:
        period = 1.0 / self.fps
        done = {v: 0 for v in VIEWS}
        due = time.monotonic()
        while not self.stop_event.is_set():
            with self.cond:
                while not any(self.clients.values()) and not self.stop_event.is_set():
                    self.cond.wait(0.5)  # nobody watching: no encoding at all
                views = [v for v, n in self.clients.items() if n]
            wait = due - time.monotonic()
            if wait > 0 and self.stop_event.wait(wait):
                break
            due = max(due + period, time.monotonic())
            latest = self.latest
            if latest is None:
                continue
            for view in views:
                if done[view] == latest[0] and view in self.jpegs:
                    continue  # the loop has not classified a new frame since
                try:
                    jpeg = self._encode(view, latest)
                except Exception:  # a frame OpenCV cannot encode: skip it, keep serving
                    continue
                done[view] = latest[0]
                with self.cond:
                    self.jpegs[view] = (latest[0], latest[3][0], jpeg)
                    self.encoded += 1
                    self.cond.notify_all()

    def _encode(self, view: str, latest) -> bytes:
        cv2 = self.cv2
        _, frame, x, (index, top, latency_ms, fps, _t) = latest
        if view == "model":
            rgb = self.model_view(x)
            factor = max(1, 320 // max(1, rgb.shape[1]))
            img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            if factor > 1:
                img = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
        else:
            img = np.array(self.to_bgr(frame), copy=True)  # drawn on: never the loop's own array
        result = {"top": [{"label": lab, "score": s} for lab, _, s in top], "latency_ms": latency_ms, "fps": fps}
        draw_overlay(cv2, img, result)
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), 80])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return buf.tobytes()

    # ----------------------------------------------------------------- clients

    def _join(self, view: str) -> None:
        with self.cond:
            if not self.clients[view]:
                self.jpegs.pop(view, None)  # a new viewer starts with a fresh frame, not a stale one
            self.clients[view] += 1
            self.max_clients = max(self.max_clients, sum(self.clients.values()))
            self.cond.notify_all()

    def _leave(self, view: str) -> None:
        with self.cond:
            self.clients[view] -= 1

    def _next_jpeg(self, view: str, after: int, timeout: float = 1.0):
        """The newest JPEG of `view` newer than `after`, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.stop_event.is_set():
                item = self.jpegs.get(view)
                if item is not None and item[0] != after:
                    return item
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
        return None

    def close(self) -> None:
        self.stop_event.set()
        with self.cond:
            self.cond.notify_all()
        if self._threads:  # shutdown() waits for serve_forever: only when it runs
            self.server.shutdown()
        self.server.server_close()
        for t in self._threads:
            t.join(timeout=2)

    # ----------------------------------------------------------------- the page

    def page(self) -> bytes:
        doc = self.result()
        rows = "".join(
            f'<li><span class="label">{html.escape(t["label"])}</span>'
            f'<span class="score">{t["score"]:.3f}</span></li>'
            for t in doc["top"]
        )
        initial = json.dumps(doc, separators=(",", ":")).replace("<", "\\u003c")  # safe inside <script>
        return (
            _PAGE.replace("{title}", html.escape(self.title))
            .replace("{model}", html.escape(str(self.info.get("model", ""))))
            .replace("{rows}", rows)
            .replace("{initial}", initial)
            .encode("utf-8")
        )


def _bind(host: str, port: int, view: LiveView) -> ThreadingHTTPServer:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True  # a stalled client never keeps the process alive
        allow_reuse_address = True  # a restart may reuse a port in TIME_WAIT; a listener still refuses

    handler = type("Handler", (_Handler,), {"view": view})
    try:
        return Server((host, port), handler)
    except OSError as exc:
        import errno

        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(
                f"cannot serve the live view on {where}: the port is in use (another live view or "
                "program has it); pick another with --serve HOST:PORT"
            ) from None
        if exc.errno == errno.EACCES:
            raise ServeError(f"cannot serve the live view on {where}: permission denied (ports below 1024 "
                             "need root; use 8080)") from None  # fmt: skip
        raise ServeError(
            f"cannot serve the live view on {where}: {exc.strerror or exc} (is {host} an address of "
            "this machine?)"
        ) from None


class _Handler(BaseHTTPRequestHandler):
    view: LiveView  # set per server
    server_version = "edgekit-liveview/1"
    protocol_version = "HTTP/1.0"  # one response per connection: no keep-alive bookkeeping
    timeout = CLIENT_TIMEOUT_S

    def log_message(self, format, *args) -> None:
        pass  # stderr carries the script's protocol lines only

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        try:
            if url.path == "/":
                self._send(200, "text/html; charset=utf-8", self.view.page())
            elif url.path == "/api/latest":
                body = json.dumps(self.view.result(), separators=(",", ":")).encode("utf-8")
                self._send(200, "application/json", body)
            elif url.path == "/stream.mjpg":
                view = (parse_qs(url.query).get("view") or ["camera"])[0]
                if view not in VIEWS:
                    self._send(404, "text/plain", f"no view {view!r}; views: {', '.join(VIEWS)}\n".encode())
                else:
                    self._stream(view)
            else:
                self._send(404, "text/plain", b"not found: this server has /, /stream.mjpg and /api/latest\n")
        except OSError:  # BrokenPipe, ConnectionReset, timeout
            pass  # the client went away: nothing to tell anyone

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, view: str) -> None:
        hub = self.view
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Pragma", "no-cache")
        self.end_headers()
        # a small send buffer: a slow viewer's writes block after a frame or two and it skips to the
        # newest one, instead of the kernel queueing seconds of stale frames for it
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        hub._join(view)
        try:
            last = None
            while not hub.stop_event.is_set():
                item = hub._next_jpeg(view, last)
                if item is None:
                    continue
                last, index, jpeg = item
                head = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                    f"X-Frame: {index}\r\n\r\n"
                )
                self.wfile.write(head.encode("ascii") + jpeg + b"\r\n")
                self.wfile.flush()
                hub.sent += 1
        finally:
            hub._leave(view)
