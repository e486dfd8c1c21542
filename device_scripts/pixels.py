"""The byte order each capture back end delivers, and the one conversion to RGB the model needs.

picamera2 names its formats after DRM fourccs, which describe a little-endian word: `RGB888` puts
the bytes in memory as B, G, R and `BGR888` as R, G, B (the picamera2 manual, "Image formats";
picamera2 issues #191, #848, #1148, #1325). OpenCV's VideoCapture always delivers B, G, R.
Every source declares its order once; `to_rgb` converts from it exactly once, before preprocessing.
"""

from __future__ import annotations

import numpy as np

ORDERS = ("RGB", "BGR", "RGBX", "BGRX", "GRAY")
OPENCV = "BGR"
PICAMERA2_FORMATS = {"RGB888": "BGR", "BGR888": "RGB", "XRGB8888": "BGRX", "XBGR8888": "RGBX"}


def _cv2():
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def to_rgb(frame: np.ndarray, order: str) -> np.ndarray:
    """A frame in `order` -> RGB uint8 HxWx3 (contiguous: 4x faster to resize than a reversed view)."""
    if frame.ndim == 2 or order == "GRAY":
        return np.repeat(frame.reshape(frame.shape[0], frame.shape[1], 1), 3, axis=-1)
    if order in ("RGB", "RGBX"):
        return frame[..., :3] if frame.shape[-1] == 4 else frame
    if order not in ("BGR", "BGRX"):
        raise ValueError(f"unknown byte order {order!r}; known: {', '.join(ORDERS)}")
    cv2 = _cv2()
    if cv2 is not None:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if frame.shape[-1] == 4 else cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(frame[..., 2::-1])


def to_bgr(frame: np.ndarray, order: str) -> np.ndarray:
    """A frame in `order` -> BGR uint8 HxWx3, what OpenCV draws on and encodes."""
    if order in ("BGR", "BGRX") and frame.ndim == 3:
        return frame[..., :3] if frame.shape[-1] == 4 else frame
    return np.ascontiguousarray(to_rgb(frame, order)[..., ::-1])
