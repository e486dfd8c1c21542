#!/usr/bin/env python3
"""Live classification from a camera, a video file or a stream (runs on the device as it is).

    python3 classify_camera.py --model model.tflite [--labels labels.txt]
        [--camera 0 | --picamera2 | --source video.mp4 | --source rtsp://...] [--threads 4] [--top-k 3]
        [--headless] [--log predictions.jsonl] [--max-frames N] [--realtime] [--json]
        [--serve [HOST:]PORT [--serve-fps 15]]

Capture runs in its own thread, so inference never waits for the camera: a live source keeps only
the newest frame (older ones count as dropped); a video file is read ahead in order and every frame
is classified, unless --realtime paces it like a camera. Needs Python 3.9+, numpy, one TFLite
interpreter and OpenCV (or picamera2 on Raspberry Pi OS Bookworm).

--serve starts a live view in the browser beside the loop (liveview.py); each source declares the
byte order of its frames (pixels.py), converted to RGB exactly once.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import edgelib
import numpy as np
import pixels
from capture import open_source

LOG_FLUSH_S = 0.2  # the frame log is written in whole lines at most this long after each frame
PROGRESS_EVERY_S = 2.0
# the loop's time per frame, in order: waiting for the source (queue hand-off or camera), preprocessing
# in the loop (live sources; a video file's reader thread does it ahead), invoke, scores and top-k,
# then the log line, the live view hand-over, progress and the window
LOOP_PARTS = ("wait", "prepare", "invoke", "top_k", "log_view")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Classify camera or video frames with a .tflite model.")
    p.add_argument("--model", required=True, help="the .tflite file")
    p.add_argument("--labels", default=None, help="labels file (default: the bundle's or the model's)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, default=None, help="OpenCV camera index (V4L2), e.g. 0")
    src.add_argument("--picamera2", action="store_true", help="Raspberry Pi camera through picamera2")
    src.add_argument("--source", default=None, help="a video file or a stream URL (rtsp://, http://)")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads")
    p.add_argument("--top-k", type=int, default=3, help="labels shown and logged per frame")
    p.add_argument("--headless", action="store_true", help="never open a window")
    p.add_argument("--log", default=None, help="write one JSON line per frame here (flushed per line)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N classified frames")
    p.add_argument("--realtime", action="store_true", help="pace a video file like a live camera (drops)")
    p.add_argument("--window", type=int, default=30, help="frames in the sliding FPS window")
    p.add_argument("--retries", type=int, default=5, help="reconnect attempts when a camera disappears")
    p.add_argument("--width", type=int, default=640, help="capture width asked of a camera")
    p.add_argument("--height", type=int, default=480, help="capture height asked of a camera")
    p.add_argument("--runtime", default=None, choices=edgelib.RUNTIMES, help="force one interpreter")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document")
    p.add_argument("--picamera2-format", default="RGB888", choices=sorted(pixels.PICAMERA2_FORMATS),
                   help="picamera2 pixel format (RGB888 delivers B,G,R bytes; converted either way)")
    p.add_argument("--serve", default=None, metavar="[HOST:]PORT",
                   help="live view in the browser on HOST:PORT (default host 127.0.0.1; 0 = any free port)")
    p.add_argument("--serve-fps", type=float, default=15.0, help="most frames per second the live view encodes")
    args = p.parse_args(argv)
    if args.camera is None and args.source is None and not args.picamera2:
        args.camera = 0
    for name in ("top_k", "window"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_frames is not None and args.max_frames < 1:
        p.error("--max-frames must be >= 1")
    if args.retries < 0:
        p.error("--retries must be >= 0")
    if not 0 < args.serve_fps <= 120:
        p.error("--serve-fps must be in (0, 120]")
    if args.serve is not None:
        import liveview

        try:
            liveview.parse_address(args.serve)
        except liveview.ServeError as exc:
            p.error(str(exc))
    return args


# --------------------------------------------------------------------------- display


class Overlay:
    """Top-k, latency and FPS drawn on the frame in a window, when a display and GUI support exist."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        self.quit = False

    def show(self, frame, top: list, latency_ms: float, fps) -> None:
        if not self.enabled:
            return
        import cv2

        lines = [f"{label} {score:.2f}" for label, _, score in top]
        lines.append(f"{latency_ms:.1f} ms  {fps or 0:.1f} FPS")
        img = frame.copy()
        for i, text in enumerate(lines):
            cv2.putText(img, text, (8, 24 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2)
        try:
            cv2.imshow("edgekit", img)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                self.quit = True
        except cv2.error:  # OpenCV built without GUI (headless wheel)
            edgelib.warn("this OpenCV has no GUI support: running headless")
            self.enabled = False

    def close(self) -> None:
        if self.enabled:
            import cv2

            cv2.destroyAllWindows()


# --------------------------------------------------------------------------- the loop


def _sigterm(signum, frame):
    raise KeyboardInterrupt


class _Stop:
    """Ctrl-C / SIGTERM while classifying: finish the frame in hand, stop, write the summary (the log
    stays whole). A terminal's Ctrl-C often arrives twice (to the process group, and passed on by
    edgekit's runner): a repeat within REPEAT_S is the same request; a later one raises at once."""

    REPEAT_S = 1.0

    def __init__(self, finished_ignores: bool = False) -> None:
        self.finished_ignores = finished_ignores
        self.source = None  # set once open: its next() returns None when a stop is requested
        self.requested = False
        self.at = 0.0
        self.previous = {}

    def _handler(self, signum, frame):
        if self.requested and time.monotonic() - self.at > self.REPEAT_S:
            raise KeyboardInterrupt
        if not self.requested:
            self.requested, self.at = True, time.monotonic()
        if self.source is not None:
            self.source.cancelled = True

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (a caller embedding us): plain KeyboardInterrupt
                pass
        return self

    def __exit__(self, *exc):
        # The run is over and its summary is about to be written: a late Ctrl-C (or the test harness's
        # stop racing the end of a video) has nothing left to stop, and must not kill the process
        # halfway through that summary. The script's main() leaves the signals ignored from here on;
        # an embedding caller gets its own handlers back.
        for sig, old in self.previous.items():
            signal.signal(sig, signal.SIG_IGN if self.finished_ignores else old)
        return False


def make_prepare(ctx, order: str):
    """frame in the source's byte order -> the model's input tensor: one conversion to RGB, then
    edgelib's preprocessing (the same function the desktop and eval_images.py use)."""

    def prepare(frame):
        return edgelib.prepare_image(ctx, pixels.to_rgb(frame, order))

    return prepare


def _live_view(args):
    """The live view bound to its port (before anything else starts), or None without --serve."""
    if not args.serve:
        return None
    import liveview

    try:
        view = liveview.LiveView(args.serve, fps=args.serve_fps)
    except ImportError:
        raise edgelib.DependencyFailure(
            "the live view encodes JPEG with OpenCV: pip install opencv-python-headless"
        ) from None
    except liveview.ServeError as exc:
        raise edgelib.DeviceFailure(str(exc)) from None
    if not liveview.is_loopback(view.host):
        edgelib.warn(
            f"the live view listens on {view.host}:{view.port}: anyone on the network can watch this camera "
            "(no password); --serve 127.0.0.1:PORT with an SSH tunnel (edgekit camera --preview) keeps it private"
        )
    return view


def _start_live_view(view, ctx, order: str, info: dict) -> None:
    import liveview

    scale, zp = ctx.model.input["quantization"]
    prep = ctx.prep
    quant = (float(scale), int(zp)) if ctx.model.input["dtype"] != np.float32 else (0.0, 0)
    model = os.path.basename(ctx.path)
    view.start(
        to_bgr=lambda frame: pixels.to_bgr(frame, order),
        model_view=lambda x: liveview.model_input_rgb(x, quant, prep.get("mean", (0.0,) * 3),
                                                      prep.get("std", (1.0,) * 3)),
        thermal=edgelib.thermal_state,
        info={"model": model, "source": info.get("name"), "byte_order": order},
        title=f"edgekit: {model}",
    )  # fmt: skip
    # the desktop (edgekit camera --preview) reads this line to open its tunnel
    edgelib._stderr_line(f"serving: {view.url}")


def classify(args, finished_ignores: bool = False) -> tuple:
    ctx = edgelib.open_model(args.model, threads=args.threads, labels_path=args.labels, runtime=args.runtime)
    ctx.model.resize_batch(1)
    view = _live_view(args)
    with _Stop(finished_ignores) as stop:  # the view closes while a Ctrl-C still only asks to stop
        try:
            return _classify(args, ctx, view, stop)
        finally:
            if view is not None:
                view.close()


def _classify(args, ctx, view, stop) -> tuple:
    log = None
    if args.log:
        try:
            log = open(args.log, "w", encoding="utf-8")
        except OSError as exc:
            raise edgelib.InputFailure(f"cannot write log {args.log}: {exc.strerror or exc}") from None

    order = pixels.PICAMERA2_FORMATS[args.picamera2_format] if args.picamera2 else pixels.OPENCV
    prepare = make_prepare(ctx, order)
    source, info = open_source(args, prepare)
    stop.source = source
    overlay = Overlay(not args.headless)
    if view is not None:
        _start_live_view(view, ctx, order, info)
    k = min(args.top_k, ctx.num_classes)
    window = collections.deque(maxlen=args.window)
    latencies, frame_times = [], []
    counts = collections.Counter()
    frames = 0
    reason = None
    pending = []  # log lines not yet written: whole lines, written together
    try:  # one invoke before the clock starts: XNNPACK packs its weights on the first call
        ctx.model.invoke_raw(edgelib.make_batch(ctx.model, "zeros", 1))
    except Exception as exc:
        source.stop()
        raise edgelib.ModelFailure(f"{args.model}: invoke failed ({edgelib._one_line(exc)})") from None
    spent = dict.fromkeys(LOOP_PARTS, 0.0)  # where the loop's time goes, summed over frames
    t_start = time.perf_counter()
    t_end = t_flush = t_progress = t_done = t_start
    try:
        while True:
            if stop.requested:
                reason = "interrupted"
                break
            if args.max_frames is not None and frames >= args.max_frames:
                reason = "max_frames"
                break
            item = source.next()
            if item is None:
                reason = "interrupted" if stop.requested else source.end_reason()
                break
            index, frame, x = item
            t0 = time.perf_counter()
            spent["wait"] += t0 - t_done
            if x is None:
                x = prepare(frame)
            t1 = time.perf_counter()
            try:
                raw = ctx.model.invoke_raw(x)
            except Exception as exc:
                raise edgelib.ModelFailure(
                    f"{args.model}: invoke failed ({edgelib._one_line(exc)})"
                ) from None
            t2 = time.perf_counter()
            top = [(ctx.label(i), i, s) for i, s in edgelib.top_k(ctx.scores(raw)[0], k)]
            t_end = time.perf_counter()
            frames += 1
            latencies.append(t2 - t1)
            frame_times.append(t_end - t0)
            counts[top[0][0]] += 1
            window.append(t_end)
            fps = (
                (len(window) - 1) / (window[-1] - window[0])
                if len(window) > 1 and window[-1] > window[0]
                else None
            )
            if log is not None:
                line = {
                    "frame": int(index),
                    "t_s": round(t_end - t_start, 6),
                    "latency_ms": round((t2 - t1) * 1000, 4),
                    "frame_ms": round((t_end - t0) * 1000, 4),
                    "fps": round(fps, 3) if fps else None,
                    "top": [{"label": lab, "index": i, "score": round(s, 6)} for lab, i, s in top],
                }
                pending.append(json.dumps(line))
                if t_end - t_flush >= LOG_FLUSH_S:
                    _write_lines(log, pending)
                    t_flush = t_end
            if view is not None:
                view.publish(frame, x, index, top, (t2 - t1) * 1000, fps, t_end - t_start)
            if t_end - t_progress >= PROGRESS_EVERY_S:
                edgelib.progress(f"{frames} frames, {fps or 0:.1f} FPS, last {top[0][0]}")
                t_progress = t_end
            overlay.show(frame, top, (t2 - t1) * 1000, fps)
            t_done = time.perf_counter()
            spent["prepare"] += t1 - t0
            spent["invoke"] += t2 - t1
            spent["top_k"] += t_end - t2
            spent["log_view"] += t_done - t_end
            if overlay.quit:
                reason = "quit"
                break
    except KeyboardInterrupt:  # a second Ctrl-C, later than a repeat
        reason = "interrupted"
    finally:
        source.stop()
        overlay.close()
        if log is not None:
            _write_lines(log, pending)
            log.close()
    duration = t_end - t_start
    doc = {
        "schema_version": edgelib.SCHEMA_VERSION,
        "kind": "camera",
        "model": ctx.model_info(),
        "runtime": ctx.runtime_info(),
        "environment": edgelib.environment(),
        "source": info,
        "settings": {
            "top_k": k,
            "realtime": bool(args.realtime),
            "max_frames": args.max_frames,
            "window": args.window,
            "serve": args.serve,
        },
        "frames": frames,
        "captured": int(source.captured),
        "dropped": int(source.dropped),
        "duration_s": duration,
        "fps": frames / duration if duration > 0 else None,
        "latency_ms": edgelib.percentiles_ms(latencies),
        "frame_ms": edgelib.percentiles_ms(frame_times),
        "inference_bound_fps": 1.0 / float(np.median(latencies)) if latencies else None,
        "top1_distribution": dict(counts.most_common()),
        "end_reason": reason,
        "error": getattr(source, "error", None),
        "log": os.path.abspath(args.log) if args.log else None,
        "log_lines": frames if args.log else 0,
        "loop_ms": {k: v * 1000 / frames for k, v in spent.items()} if frames else None,
        "live_view": view.summary() if view is not None else None,
        "peak_rss_mb": edgelib.peak_rss_mb(),
    }
    return doc, source


def _write_lines(log, pending: list) -> None:
    if pending:
        log.write("\n".join(pending) + "\n")  # one write of whole lines: a reader never sees half a line
        log.flush()
        pending.clear()


def print_text(doc: dict) -> None:
    lat = doc["latency_ms"]
    print(
        f"{doc['frames']} frames ({doc['dropped']} dropped) from {doc['source']['name']} in "
        f"{doc['duration_s']:.2f} s: {doc['fps'] or 0:.1f} FPS, end: {doc['end_reason']}"
    )
    if lat:
        print(f"latency p50 {lat['p50']:.2f} ms  p90 {lat['p90']:.2f} ms  p99 {lat['p99']:.2f} ms")
    for label, n in list(doc["top1_distribution"].items())[:10]:
        print(f"  {label}: {n}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        signal.signal(signal.SIGTERM, _sigterm)  # a remote stop ends like Ctrl-C: summary written
    except ValueError:
        pass
    doc, source = classify(args, finished_ignores=True)
    if args.json:
        edgelib.emit_json(doc)
    else:
        print_text(doc)
    if doc["end_reason"] == "camera_lost":
        raise edgelib.DeviceFailure(doc["error"])
    return 0


if __name__ == "__main__":
    sys.exit(edgelib.run_main(main))
