"""Capture back ends of the camera script: a video file read ahead in order, or a live source (OpenCV
camera or stream, picamera2) of which only the newest frame is kept. Each declares the byte order of
the frames it delivers (`byte_order` in its description; pixels.py), so preprocessing converts to RGB
exactly once. Runs on the device: numpy, OpenCV or picamera2, stdlib.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import edgelib
import pixels


def _cv2():
    try:
        import cv2
    except ImportError:
        raise edgelib.DependencyFailure(
            "OpenCV is needed for camera and video capture: pip install opencv-python-headless"
        ) from None
    return cv2


def _cv2_or_none():
    try:
        import cv2
    except ImportError:  # picamera2 without OpenCV
        return None
    return cv2


class OrderedReader:
    """A video file read ahead in a thread into a bounded queue: every frame, in order, none dropped.

    The reader thread also preprocesses each frame (`prepare`), so decoding and preprocessing overlap
    with inference (numpy, OpenCV and the interpreter release the GIL) and inference sets the pace.
    """

    def __init__(self, cap, name: str, prepare=None) -> None:
        self.cap = cap
        self.name = name
        self.prepare = prepare
        self.queue = queue.Queue(maxsize=8)
        self.stop_event = threading.Event()
        self.captured = 0
        self.dropped = 0
        self.error = None
        self.cancelled = False  # set by the Ctrl-C handler: next() returns None
        self.thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stop_event.is_set():
                ok, frame = self.cap.read()
                if not ok or frame is None:
                    break
                item = (self.captured, frame, self.prepare(frame) if self.prepare else None)
                self.captured += 1
                while not self.stop_event.is_set():
                    try:
                        self.queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        finally:
            self._put_end()

    def _put_end(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.queue.put(None, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self):
        """(index, BGR frame), or None at the end of the video."""
        while not self.cancelled:
            try:
                return self.queue.get(timeout=0.5)
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    return None
        return None

    def end_reason(self) -> str:
        return "end_of_video"

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=2)
        self.cap.release()


class LatestFrame:
    """A live source: the capture thread keeps only the newest frame, so inference sets the pace.

    `open_fn()` returns a reader with read() -> (ok, frame) and release(); a failing live source is
    reopened with back-off (0.5 s, 1 s, 2 s, ...) `retries` times before it is reported lost.
    """

    def __init__(self, open_fn, name: str, live: bool, retries: int, pace_fps=None) -> None:
        self.open_fn = open_fn
        self.name = name
        self.live = live
        self.retries = retries
        self.pace_fps = pace_fps
        self.cond = threading.Condition()
        self.latest = None
        self.captured = 0
        self.consumed = 0
        self.ended = False
        self.error = None
        self.cancelled = False  # set by the Ctrl-C handler: next() returns None
        self.stop_event = threading.Event()
        self.reader = open_fn()
        self.thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self.thread.start()

    @property
    def dropped(self) -> int:
        with self.cond:
            waiting = 1 if self.latest is not None else 0
            return max(0, self.captured - self.consumed - waiting)

    def _publish(self, frame) -> None:
        with self.cond:
            self.latest = (self.captured, frame, None)  # preprocessed by the consumer: most frames drop
            self.captured += 1
            self.cond.notify()

    def _reconnect(self) -> bool:
        for attempt in range(self.retries):
            delay = 0.5 * (2**attempt)
            edgelib.warn(
                f"{self.name}: no frame; reconnecting in {delay:.1f} s ({attempt + 1}/{self.retries})"
            )
            if self.stop_event.wait(delay):
                return False
            try:
                self.reader.release()
            except Exception:
                pass
            try:
                self.reader = self.open_fn()
                return True
            except edgelib.ScriptError:
                continue
        self.error = (
            f"{self.name} stopped delivering frames and did not come back after {self.retries} retries"
        )
        return False

    def _run(self) -> None:
        t_start = time.perf_counter()
        try:
            while not self.stop_event.is_set():
                ok, frame = self.reader.read()
                if not ok or frame is None:
                    if self.live and self._reconnect():
                        continue
                    break
                if self.pace_fps:  # a file played like a camera: wait for the frame's timestamp
                    due = t_start + self.captured / self.pace_fps
                    wait = due - time.perf_counter()
                    if wait > 0 and self.stop_event.wait(wait):
                        break
                self._publish(frame)
        finally:
            with self.cond:
                self.ended = True
                self.cond.notify_all()

    def next(self):
        with self.cond:
            while self.latest is None and not self.ended and not self.cancelled:
                self.cond.wait(0.5)
            if self.latest is None:
                return None
            item, self.latest = self.latest, None
            self.consumed += 1
            return item

    def end_reason(self) -> str:
        if self.error:
            return "camera_lost"
        return "end_of_stream" if self.live else "end_of_video"

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=3)
        try:
            self.reader.release()
        except Exception:
            pass


class _Picamera2Reader:
    """picamera2 (libcamera) behind the read()/release() interface; RGB888 arrives in BGR order."""

    def __init__(self, width: int, height: int, fmt: str = "RGB888") -> None:
        self.byte_order = pixels.PICAMERA2_FORMATS[fmt]
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise edgelib.DependencyFailure(
                "picamera2 is not installed: sudo apt install python3-picamera2 (Raspberry Pi OS Bookworm), "
                "or use --camera 0 for OpenCV/V4L2"
            ) from None
        try:
            self.cam = Picamera2()
            config = self.cam.create_preview_configuration(main={"size": (width, height), "format": fmt})
            self.cam.configure(config)
            self.cam.start()
        except Exception as exc:
            raise edgelib.DeviceFailure(
                f"picamera2 cannot start the camera ({edgelib._one_line(exc)})"
            ) from None

    def read(self):
        try:
            return True, self.cam.capture_array("main")
        except Exception:
            return False, None

    def release(self) -> None:
        try:
            self.cam.stop()
            self.cam.close()
        except Exception:
            pass


def open_source(args, prepare=None):
    """(source, description) for --camera / --picamera2 / --source; `prepare(frame)` -> model input,
    run in the reader thread of a video file."""
    if args.picamera2:

        def open_pi():
            return _Picamera2Reader(args.width, args.height, args.picamera2_format)

        src = LatestFrame(open_pi, "picamera2", live=True, retries=args.retries)
        info = {"kind": "picamera2", "name": "picamera2", "width": args.width, "height": args.height}
        info.update(format=args.picamera2_format, byte_order=src.reader.byte_order)
        return src, info
    cv2 = _cv2()
    if args.source is not None:
        is_stream = "://" in args.source
        if not is_stream and not os.path.isfile(args.source):
            raise edgelib.InputFailure(f"video file {args.source} does not exist")

        def open_video():
            cap = cv2.VideoCapture(args.source)
            if not cap.isOpened():
                cls = edgelib.DeviceFailure if is_stream else edgelib.InputFailure
                raise cls(f"cannot open {'stream' if is_stream else 'video'} {args.source} with OpenCV")
            return cap

        cap = open_video()
        info = _cap_info(cv2, cap, "stream" if is_stream else "file", args.source)
        if is_stream:
            return LatestFrame(open_video, args.source, live=True, retries=args.retries), info
        if args.realtime:
            fps = info["fps"] or 30.0
            cap.release()
            return LatestFrame(open_video, args.source, live=False, retries=0, pace_fps=fps), info
        return OrderedReader(cap, args.source, prepare=prepare), info

    def open_camera():
        cap = cv2.VideoCapture(args.camera)
        if not cap.isOpened():
            raise edgelib.DeviceFailure(
                f"cannot open camera {args.camera} (is it connected? on Raspberry Pi OS Bookworm try --picamera2)"
            )
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, args.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, args.height)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # do not let the driver queue stale frames
        return cap

    src = LatestFrame(open_camera, f"camera {args.camera}", live=True, retries=args.retries)
    return src, _cap_info(cv2, src.reader, "camera", str(args.camera))


def _cap_info(cv2, cap, kind: str, name: str) -> dict:
    fps = cap.get(cv2.CAP_PROP_FPS) or None
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if kind == "file" else None
    return {
        "kind": kind,
        "name": name,
        "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
        "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
        "fps": float(fps) if fps else None,
        "frame_count": frames,
        "byte_order": pixels.OPENCV,
    }


