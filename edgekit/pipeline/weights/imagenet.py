"""`--weights imagenet`: the published ImageNet weights, downloaded once into a cache.

MobileNet v1: Keras' files `mobilenet_{1_0,7_5,5_0,2_5}_{128,160,192,224}_tf[_no_top].h5` (the URL
keras.applications.mobilenet uses). ResNet-18/34: torchvision's IMAGENET1K_V1 state dicts, whose
file names carry the first 8 hex digits of their sha256 (checked after download).

Cache: $EDGEKIT_WEIGHTS_DIR, else $EDGEKIT_HOME/weights, else the user cache dir (platformdirs);
Keras' own cache (~/.keras/models, or $KERAS_HOME/models) is read too when it already holds the file.
$EDGEKIT_WEIGHTS_URL replaces the download base URL (a mirror; the tests point it at a closed port).
A file is downloaded to a temporary name and renamed only when complete, so an interrupted download
leaves nothing behind; without a network the error names the file, its URL and how to pass it by path.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import ModelFileError, UsageError

KERAS_MOBILENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
TORCHVISION_URL = "https://download.pytorch.org/models/"
ALPHAS = (0.25, 0.5, 0.75, 1.0)
RESOLUTIONS = (128, 160, 192, 224)
TORCHVISION_FILES = {"resnet18": "resnet18-f37072fd.pth", "resnet34": "resnet34-b627a593.pth"}
_ALPHA_TEXT = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}
TIMEOUT_S = 30


@dataclass(frozen=True)
class Published:
    file: str
    url: str
    family: str
    alpha: float | None = None
    resolution: int | None = None
    top: bool = True


def mobilenet_file(alpha: float, resolution: int, top: bool = True) -> Published:
    """The published Keras file for α × resolution, or a UsageError naming the nearest ones."""
    a = next((x for x in ALPHAS if abs(x - alpha) < 1e-9), None)
    if a is None or resolution not in RESOLUTIONS:
        raise UsageError(
            f"Keras publishes no MobileNet v1 ImageNet weights for α {alpha:g} at {resolution} px; nearest: "
            f"{', '.join(p.file for p in nearest(alpha, resolution, top))}",
            hint=f"use --alpha in {', '.join(f'{x:g}' for x in ALPHAS)} and --resolution in "
            f"{', '.join(map(str, RESOLUTIONS))}",
        )
    name = f"mobilenet_{_ALPHA_TEXT[a]}_{resolution}_tf{'' if top else '_no_top'}.h5"
    return Published(name, _base(KERAS_MOBILENET_URL) + name, "mobilenet_v1", a, resolution, top)


def nearest(alpha: float, resolution: int, top: bool = True) -> list[Published]:
    """The published files closest in α and in resolution (up to two of each, best first)."""
    a = sorted(ALPHAS, key=lambda x: (abs(x - alpha), x))[:2]
    r = sorted(RESOLUTIONS, key=lambda x: (abs(x - resolution), x))[:2]
    pairs = sorted({(x, y) for x in a for y in r}, key=lambda p: (abs(p[0] - alpha) / 0.25 + abs(p[1] - resolution) / 32))
    return [mobilenet_file(x, y, top) for x, y in pairs[:3]]


def torchvision_file(family: str) -> Published:
    if family not in TORCHVISION_FILES:
        raise UsageError(f"no published ImageNet weights for {family}; known: mobilenet_v1, resnet18, resnet34")
    name = TORCHVISION_FILES[family]
    return Published(name, _base(TORCHVISION_URL) + name, family)


def _base(default: str) -> str:
    base = os.environ.get("EDGEKIT_WEIGHTS_URL") or default
    return base if base.endswith("/") else base + "/"


def cache_dir() -> Path:
    if os.environ.get("EDGEKIT_WEIGHTS_DIR"):
        return Path(os.environ["EDGEKIT_WEIGHTS_DIR"]).expanduser()
    if os.environ.get("EDGEKIT_HOME"):
        return Path(os.environ["EDGEKIT_HOME"]).expanduser() / "weights"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("edgekit")) / "weights"


def _keras_cache(name: str) -> Path | None:
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    p = home / "models" / name
    return p if p.is_file() else None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(pub: Published, progress: Callable[[str], None] = lambda _m: None) -> Path:
    """The local path of a published file: from the cache, else downloaded into it once."""
    target = cache_dir() / pub.file
    if target.is_file():
        return target
    keras_copy = _keras_cache(pub.file)
    if keras_copy is not None:
        return keras_copy
    progress(f"downloading {pub.file}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(
            f"cannot create the weights cache {target.parent} ({exc.strerror})",
            hint="set EDGEKIT_WEIGHTS_DIR to a writable folder",
        ) from None
    fd, tmp = tempfile.mkstemp(prefix=f".{pub.file}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(pub.url, timeout=TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
                done += len(chunk)
            if total and done != total:
                raise OSError(f"received {done} of {total} bytes")
        _check_name_hash(pub, Path(tmp))
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        Path(tmp).unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise ModelFileError(
            f"cannot download {pub.file} from {pub.url} ({reason}); fetch it where there is a network and "
            f"pass it with --weights PATH/{pub.file} (or copy it into {target.parent})"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _check_name_hash(pub: Published, path: Path) -> None:
    """torchvision names carry the sha256 prefix (resnet18-f37072fd.pth): a mismatch is a bad download."""
    m = re.search(r"-([0-9a-f]{8})\.pth$", pub.file)
    if m and not sha256(path).startswith(m.group(1)):
        raise OSError(f"sha256 does not start with {m.group(1)} as the file name says")
