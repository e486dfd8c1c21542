"""Image data for calibration and evaluation: folders of images, or synthetic images when none given.

Decoding, resizing and normalisation use the device scripts' own code (edgelib), so the desktop
calibrates and evaluates on exactly the inputs a device computes from the same files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.device_scripts import edgelib
from edgekit.errors import InputDataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageBatch:
    x: np.ndarray  # normalised float32 NHWC
    paths: tuple[str, ...]
    skipped: tuple[str, ...]  # files that could not be decoded
    source: str
    synthetic: bool = False


def synthetic_images(n: int, prep: dict, seed: int = 0) -> ImageBatch:
    """Smooth random images (low-resolution noise upsampled): closer to photo statistics than white noise."""
    rng = np.random.default_rng(seed)
    h, w = prep["size"]
    out = []
    for _ in range(n):
        coarse = rng.integers(0, 256, size=(max(2, h // 8), max(2, w // 8), 3)).astype(np.uint8)
        out.append(edgelib.preprocess(coarse, prep))
    return ImageBatch(np.stack(out).astype(np.float32), (), (), "synthetic", synthetic=True)


def load_folder(root: str | Path, prep: dict, limit: int | None = None, seed: int = 0) -> ImageBatch:
    """All images below `root` (any sub-folder layout), preprocessed; a seeded sample when `limit`."""
    root = Path(root)
    if not root.is_dir():
        raise InputDataError(f"image folder {root} does not exist", hint="pass a folder of .jpg/.png images")
    paths = edgelib.list_images(str(root))
    if not paths:
        raise InputDataError(
            f"image folder {root} contains no images ({', '.join(edgelib.IMAGE_EXTENSIONS)})",
            hint="point at a folder with images, e.g. DIR/<class>/*.jpg",
        )
    if limit and len(paths) > limit:
        rng = np.random.default_rng(seed)
        paths = sorted(rng.choice(paths, size=limit, replace=False).tolist())
    xs, ok, skipped = [], [], []
    for p in paths:
        try:
            xs.append(edgelib.preprocess(edgelib.decode_image(p), prep))
            ok.append(p)
        except edgelib.ImageReadError:
            log.warning("skipped unreadable image %s", p)
            skipped.append(p)
    if not xs:
        raise InputDataError(
            f"none of the {len(paths)} images in {root} could be decoded", hint="check the files"
        )
    return ImageBatch(np.stack(xs).astype(np.float32), tuple(ok), tuple(skipped), f"folder:{root}")


def load_calibration(spec: str | None, prep: dict, limit: int, seed: int = 0) -> ImageBatch:
    """`--calibration`: a folder, or None for synthetic images."""
    if spec is None:
        return synthetic_images(limit, prep, seed=seed)
    return load_folder(spec, prep, limit=limit, seed=seed)
