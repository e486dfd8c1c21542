"""Images on the device: reading with size caps, decoding, resizing, preprocessing, listing.

Part of edgelib (see its docstring): numpy and the standard library only; never edgekit.
"""

from __future__ import annotations

import io
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # siblings, as on the device

from ek_plumbing import ModelFailure
from ek_runtime import Model

# --------------------------------------------------------------------------- images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
# A decompression bomb (a 6 MB JPEG of 20000 x 20000 pixels) would take gigabytes once decoded: images
# over this many pixels, or files over MAX_IMAGE_BYTES, are skipped with a reason before any decoding.
# 50 Mpx holds a 48 Mpx phone photo (8000 x 6000); EDGEKIT_MAX_IMAGE_PIXELS changes it (here and on a device).
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
MAX_IMAGE_BYTES = 256 << 20


def max_image_pixels() -> int:
    try:
        return max(1, int(os.environ.get("EDGEKIT_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)))
    except ValueError:
        return DEFAULT_MAX_IMAGE_PIXELS


class ImageReadError(ValueError):
    """An image file that cannot be decoded (corrupt, truncated, not an image, too large, not a file)."""


def read_image_file(path: str) -> bytes:
    """The bytes of a regular file of at most MAX_IMAGE_BYTES; ImageReadError for anything else.

    Opened non-blocking, so a named pipe called x.jpg is refused instead of hanging the reader."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageReadError(f"{path} is not a regular file")
        if st.st_size > MAX_IMAGE_BYTES:
            raise ImageReadError(
                f"{path} is {st.st_size / 2**20:.0f} MiB, over the {MAX_IMAGE_BYTES >> 20} MiB image file cap"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def image_dimensions(data: bytes):
    """(width, height) from a PNG, JPEG, GIF, BMP or WebP header without decoding; None if unknown."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"BM" and len(data) >= 26:
        w = int.from_bytes(data[18:22], "little", signed=True)
        h = int.from_bytes(data[22:26], "little", signed=True)
        return abs(w), abs(h)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if chunk == b"VP8 ":
            return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if data[:2] == b"\xff\xd8":
        return _jpeg_dimensions(data)
    return None


def _jpeg_dimensions(data: bytes):
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 <= len(data):
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        i += 2 + length
    return None


def check_pixels(path: str, size) -> None:
    """ImageReadError when an image of `size` (width, height) is over the pixel cap."""
    if size is None:
        return
    w, h = int(size[0]), int(size[1])
    cap = max_image_pixels()
    if w * h > cap:
        raise ImageReadError(
            f"{path} is {w} x {h} pixels ({w * h / 1e6:.0f} Mpx), over the {cap / 1e6:g} Mpx cap "
            "(EDGEKIT_MAX_IMAGE_PIXELS)"
        )


def _pil_size(data: bytes):
    """(width, height) from Pillow's header parser (TIFF and the rest), None without Pillow."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:
        return None


def screen_image(path: str) -> str | None:
    """Why `path` would be skipped (not a regular file, too large, too many pixels), else None.

    What the desktop checks before it ships an image to a device."""
    try:
        data = read_image_file(path)
        check_pixels(path, image_dimensions(data) or _pil_size(data))
    except ImageReadError as exc:
        return str(exc)
    return None


def decode_image(path: str) -> np.ndarray:
    """RGB uint8 HxWx3 from a file, with OpenCV when present, else Pillow.

    Grayscale, RGBA and CMYK become RGB. Raises ImageReadError for unreadable files, files that are
    not regular files, and images over the pixel cap (checked from the header, before decoding).
    """
    data = read_image_file(path)
    check_pixels(path, image_dimensions(data) or _pil_size(data))
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if img is not None:
            check_pixels(path, (img.shape[1], img.shape[0]))
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        # fall through: Pillow reads a few formats OpenCV does not (GIF, CMYK JPEG variants)
    try:
        from PIL import Image
    except ImportError as exc:
        if cv2 is None:
            raise ImageReadError("neither OpenCV nor Pillow is installed to decode images") from exc
        raise ImageReadError(f"cannot decode image {path}") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            check_pixels(path, im.size)  # the header only: nothing is decoded yet
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(f"cannot decode image {path}: {exc.__class__.__name__}") from None


def resize_bilinear(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with half-pixel centres (the formula of cv2 INTER_LINEAR and tf.image.resize).

    Returns float32 so no rounding happens before normalisation.
    """
    h, w = int(size[0]), int(size[1])
    if img.shape[0] == h and img.shape[1] == w:
        return img.astype(np.float32)
    try:
        import cv2

        return cv2.resize(img.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    except ImportError:
        pass
    src = img.astype(np.float32)
    ys = (np.arange(h) + 0.5) * (src.shape[0] / h) - 0.5
    xs = (np.arange(w) + 0.5) * (src.shape[1] / w) - 0.5
    ys = np.clip(ys, 0, src.shape[0] - 1)
    xs = np.clip(xs, 0, src.shape[1] - 1)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, src.shape[0] - 1)
    x1 = np.minimum(x0 + 1, src.shape[1] - 1)
    wy = (ys - y0)[:, None, None]
    wx = (xs - x0)[None, :, None]
    top = src[y0][:, x0] * (1 - wx) + src[y0][:, x1] * wx
    bottom = src[y1][:, x0] * (1 - wx) + src[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


CROPS = ("none", "center")


def center_crop(img: np.ndarray, size) -> np.ndarray:
    """The largest centred window of `img` with the aspect ratio of `size` (height, width): a view."""
    h, w = img.shape[:2]
    th, tw = int(size[0]), int(size[1])
    if h * tw > w * th:  # taller than the target: trim top and bottom
        ch = max(1, int(round(w * th / tw)))
        top = (h - ch) // 2
        return img[top : top + ch]
    cw = max(1, int(round(h * tw / th)))
    left = (w - cw) // 2
    return img[:, left : left + cw]


def preprocess(img: np.ndarray, prep: dict) -> np.ndarray:
    """RGB uint8 image -> normalised float32 HxWx3, following a manifest's `preprocessing` block:
    `crop` none (the whole image, default) or center (centre window of the input's aspect ratio),
    then a bilinear resize to `size`, then (pixel - mean) / std."""
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.shape[-1] == 4:
        img = img[..., :3]
    crop = prep.get("crop") or "none"
    if crop == "center":
        img = center_crop(img, prep["size"])
    elif crop != "none":
        raise ValueError(f"preprocessing crop must be one of {', '.join(CROPS)}; received {crop!r}")
    x = resize_bilinear(img, tuple(prep["size"]))  # always a fresh float32 array: normalise in place
    x -= np.asarray(prep.get("mean", (0.0, 0.0, 0.0)), dtype=np.float32)
    x /= np.asarray(prep.get("std", (1.0, 1.0, 1.0)), dtype=np.float32)
    return x


def list_images(root: str) -> list[str]:
    """Image files below `root`, sorted, recursively."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.lower().endswith(IMAGE_EXTENSIONS) and not fn.startswith("."):
                out.append(os.path.join(dirpath, fn))
    return out


MAX_INPUT_SIDE = 8192  # preprocessing.size bound: a larger side is a corrupt manifest, not a model


def bundle_name_problem(name):
    """Why `name` is not a plain relative path inside a bundle (None when it is): no absolute path,
    no `..`, no empty or `.` part, no backslash or NUL."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty file name"
    if name.startswith("/") or "\\" in name or "\x00" in name:
        return "must be a relative path inside the bundle"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "must be a plain path inside the bundle (no `..`, `.` or empty parts)"
    return None


def _numbers(v, n_ok=(1, 3)) -> bool:
    return (
        isinstance(v, (list, tuple))
        and len(v) in n_ok
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
    )


def preprocessing_problem(prep):
    """Why a `preprocessing` block cannot be used (None when it can): the size is two whole numbers
    in [1, MAX_INPUT_SIDE], mean and std 1 or 3 finite numbers, std never 0."""
    if not isinstance(prep, dict):
        return "missing (an object with size, mean and std is required)" if prep is None else "must be an object"
    size = prep.get("size")
    if not (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_INPUT_SIDE for s in size)
    ):
        return f"size must be [height, width] with each in [1, {MAX_INPUT_SIDE}]; found {size!r}"
    for key in ("mean", "std"):
        if key in prep and not _numbers(prep[key]):
            return f"{key} must be 1 or 3 finite numbers; found {prep[key]!r}"
    if "std" in prep and any(s == 0 for s in prep["std"]):
        return f"std must not be 0; found {prep['std']!r}"
    return None


def default_preprocessing(model: Model) -> dict:
    """Preprocessing for a model: its embedded metadata, else a guess from its input tensor.

    A float model without metadata gets [-1, 1] scaling (the common TF Hub convention); a quantized
    input without metadata is fed raw pixels mapped through the input's own scale and zero-point.
    """
    if model.meta and "preprocessing" in model.meta:
        problem = preprocessing_problem(model.meta["preprocessing"])
        if problem:
            raise ModelFailure(f"the model's embedded preprocessing cannot be used: {problem}")
        return dict(model.meta["preprocessing"])
    h, w = model.input_size
    if model.input["dtype"] == np.float32:
        return {"size": [h, w], "mean": [127.5] * 3, "std": [127.5] * 3, "color": "RGB", "source": "guessed"}
    scale, zp = model.input["quantization"]
    if scale:
        # Quantized input without metadata: feed raw pixels as the quantized values themselves
        # (uint8 q = p; int8 q = p - 128), the convention of the TFLite reference models.
        # q = x/scale + zp with x = (p - mean)/std gives q = p + info.min when:
        info = np.iinfo(model.input["dtype"])
        mean = float(zp - info.min)
        std = float(1.0 / scale)
        return {"size": [h, w], "mean": [mean] * 3, "std": [std] * 3, "color": "RGB", "source": "guessed"}
    return {"size": [h, w], "mean": [0.0] * 3, "std": [1.0] * 3, "color": "RGB", "source": "guessed"}
