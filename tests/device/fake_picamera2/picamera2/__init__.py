"""A stand-in for picamera2 that follows its documented format semantics, for tests without a Pi.

picamera2's manual ("Image formats"): formats name a little-endian pixel word, so in memory
  RGB888   -> 3 bytes per pixel in the order B, G, R
  BGR888   -> R, G, B
  XRGB8888 -> B, G, R, 255
  XBGR8888 -> R, G, B, 255 (the default of create_preview_configuration)
capture_array("main") returns an HxWxC uint8 array in that order. The scene is a known pattern: the
top half pure red, the bottom half pure blue (RGB), delivered at about 30 frames a second.
"""

from __future__ import annotations

import time

import numpy as np

ORDER = {"RGB888": (2, 1, 0), "BGR888": (0, 1, 2), "XRGB8888": (2, 1, 0, 3), "XBGR8888": (0, 1, 2, 3)}


def scene_rgb(width: int, height: int) -> np.ndarray:
    """The pattern in RGB with an alpha plane: top half red, bottom half blue."""
    img = np.zeros((height, width, 4), np.uint8)
    img[: height // 2, :, 0] = 255
    img[height // 2 :, :, 2] = 255
    img[..., 3] = 255
    return img


class Picamera2:
    def __init__(self, camera_num: int = 0) -> None:
        self.config = None
        self.started = False

    def create_preview_configuration(self, main=None, **kwargs) -> dict:
        main = {"format": "XBGR8888", "size": (640, 480), **(main or {})}
        return {"main": main, **kwargs}

    def configure(self, config: dict) -> None:
        if config["main"]["format"] not in ORDER:
            raise ValueError(f"unsupported format {config['main']['format']}")
        self.config = config

    def start(self) -> None:
        if self.config is None:
            self.configure(self.create_preview_configuration())
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        if not self.started:
            raise RuntimeError("camera not started")
        time.sleep(1 / 30)
        main = self.config["main"]
        w, h = main["size"]
        return np.ascontiguousarray(scene_rgb(w, h)[..., list(ORDER[main["format"]])])

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        pass
