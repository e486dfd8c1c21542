"""The data side of `edgekit train`: the train/validation split decoded once (or screened when too
large to cache), unreadable images named and dropped, and the run's samples.npz (calibration and
validation images that export and eval read back)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from edgekit.config import Preprocessing
from edgekit.data import datasets as D
from edgekit.errors import InputDataError


class DataSpec(Protocol):
    """What is read of a TrainConfig (train's; this module never imports it)."""

    data: str
    val_data: str | None
    labels_file: str | None
    val_split: float
    seed: int


Progress = Callable[[str], None]
# samples.npz stays small: at 224 px these caps keep it under ~50 MB.
CALIB_KEEP, VAL_KEEP, SAMPLE_BYTES = 200, 1000, 48 << 20


@dataclass(frozen=True, eq=False)
class Splits:
    train: D.LabeledSet
    val: D.LabeledSet
    train_img: D.Decoded | None  # None when too large to cache (decoded per batch)
    val_img: D.Decoded
    skipped: tuple[str, ...]


def prepare_data(cfg: DataSpec, size: tuple[int, int], progress: Progress) -> Splits:
    ds = D.open_dataset(cfg.data, cfg.labels_file)
    if cfg.val_data:
        val = D.open_dataset(cfg.val_data, cfg.labels_file)
        # Validation classes follow the training order, matched by name.
        val = replace(
            val, y=D.align_labels(val.class_names, ds.class_names)[val.y], class_names=ds.class_names
        )
        train = ds
    else:
        train, val = D.stratified_split(ds, cfg.val_split, cfg.seed)
    counts = train.counts()
    if len([c for c in counts.values() if c]) < 2:
        raise InputDataError(f"{ds.source}: training needs at least 2 classes with images; found {counts}")
    progress(f"decoding {len(train)} training + {len(val)} validation images from {ds.source}")
    bytes_needed = len(train) * size[0] * size[1] * 3
    if bytes_needed <= D.CACHE_LIMIT_BYTES:
        train_img = D.decode_resized(train, size)
        skipped = train_img.skipped
        train = _drop(train, skipped)
    else:
        progress(f"{bytes_needed / 2**30:.1f} GiB at {size[0]} px: decoding per batch instead of caching")
        train_img = None
        skipped = _screen(train)
        train = _drop(train, skipped)
    val_img = D.decode_resized(val, size)
    skipped += val_img.skipped
    if skipped:
        progress(f"skipped {len(skipped)} unreadable image(s): {', '.join(skipped[:5])}")
    return Splits(train, val, train_img, val_img, tuple(skipped))


def _screen(ds: D.LabeledSet) -> tuple[str, ...]:
    from edgekit.device_scripts import edgelib

    bad = []
    for i in range(len(ds)):
        try:
            ds.raw(i)
        except edgelib.ImageReadError:
            D.log.warning("skipped unreadable image %s", ds.name(i))
            bad.append(ds.name(i))
    return tuple(bad)


def _drop(ds: D.LabeledSet, names: tuple[str, ...]) -> D.LabeledSet:
    if not names:
        return ds
    bad = set(names)
    return ds.subset([i for i in range(len(ds)) if ds.name(i) not in bad])


def clean_train_sample(splits: Splits, prep: Preprocessing, seed: int, limit: int = 1024) -> np.ndarray:
    if splits.train_img is not None:
        imgs = splits.train_img.images
        if len(imgs) > limit:
            imgs = imgs[np.sort(np.random.default_rng(seed).choice(len(imgs), limit, replace=False))]
        return D.normalise(imgs, prep.to_dict())
    return D.decode(splits.train, prep.to_dict(), limit=limit, seed=seed).x


def write_samples(path: Path, splits: Splits, seed: int) -> None:
    rng = np.random.default_rng(seed)
    per = int(np.prod(splits.val_img.images.shape[1:]))
    n_cal = min(CALIB_KEEP, SAMPLE_BYTES // 4 // per)
    n_val = min(VAL_KEEP, len(splits.val_img.y), (SAMPLE_BYTES - n_cal * per) // per)
    if splits.train_img is not None:
        idx = np.sort(rng.choice(len(splits.train_img.y), min(n_cal, len(splits.train_img.y)), replace=False))
        cal_x, cal_y = splits.train_img.images[idx], splits.train_img.y[idx]
    else:
        sub = D.sample(splits.train, n_cal, seed)
        dec = D.decode_resized(sub, splits.val_img.images.shape[1:3])
        cal_x, cal_y = dec.images, dec.y
    vidx = np.sort(rng.choice(len(splits.val_img.y), n_val, replace=False))
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(
        tmp, calib_x=cal_x, calib_y=cal_y, val_x=splits.val_img.images[vidx], val_y=splits.val_img.y[vidx]
    )
    os.replace(tmp, path)
