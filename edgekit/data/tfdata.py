"""tf.data pipelines for training: decode (or use the cached decoded images), augment, normalise.

The only part of edgekit.data that imports TensorFlow.
"""

from __future__ import annotations

import logging

import numpy as np

from edgekit.data.datasets import Decoded, LabeledSet, to_rgb
from edgekit.device_scripts import edgelib

log = logging.getLogger("edgekit.data")


def tf_dataset(
    ds: LabeledSet,
    prep: dict,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment: bool = True,
    cached: Decoded | None = None,
):
    """A batched, prefetched tf.data pipeline of (normalised image, one-hot label).

    Training: reshuffled every epoch, repeated forever (use steps_per_epoch), augmented with
    stateless random ops keyed by (seed, element counter) so a run is reproducible with --seed.
    Images come from `cached` (decoded once, in memory) or are decoded per element when the set is
    too large to cache; the decode is edgelib's either way.
    """
    import tensorflow as tf

    h, w = (int(s) for s in prep["size"])
    n_cls = len(ds.class_names)
    if cached is not None:
        base = tf.data.Dataset.from_tensor_slices((cached.images, cached.y))
        n = len(cached.y)
    else:
        base = tf.data.Dataset.from_tensor_slices((list(ds.paths), ds.y)).map(
            lambda p, y: (_tf_decode(p, h, w), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        n = len(ds)
    mean = tf.constant(prep.get("mean", (0.0,) * 3), tf.float32)
    std = tf.constant(prep.get("std", (1.0,) * 3), tf.float32)

    def finish(img, y):
        x = (tf.cast(img, tf.float32) - mean) / std
        return x, tf.one_hot(y, n_cls)

    if training:
        base = base.shuffle(min(n, 10_000), seed=seed, reshuffle_each_iteration=True).repeat()
        flip = ds.flip_ok
        pipe = tf.data.Dataset.zip((base, tf.data.Dataset.counter())).map(
            lambda xy, i: (
                _augment(xy[0], tf.stack([tf.cast(seed, tf.int64), i]), h, w, flip, augment),
                xy[1],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    else:
        pipe = base
    return (
        pipe.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )



def _tf_decode(path, h: int, w: int):
    import tensorflow as tf

    def load(p):
        p = p.decode() if isinstance(p, bytes) else str(p)
        try:
            img = to_rgb(edgelib.decode_image(p))
        except edgelib.ImageReadError:
            # Screened before training; a file that broke since then trains as black, with a warning.
            log.warning("image %s became unreadable during training", p)
            img = np.zeros((h, w, 3), np.uint8)
        return np.clip(np.round(edgelib.resize_bilinear(img, (h, w))), 0, 255).astype(np.uint8)

    img = tf.numpy_function(load, [path], tf.uint8)
    img.set_shape((h, w, 3))
    return img



def _augment(img, seed, h: int, w: int, flip: bool, enabled: bool):
    """Light augmentation in pixel space: flip, random crop of 80-100% of the side, brightness ±10%."""
    import tensorflow as tf

    x = tf.cast(img, tf.float32)
    if not enabled:
        return x
    seeds = tf.random.experimental.stateless_split(seed, 4)
    if flip:
        x = tf.image.stateless_random_flip_left_right(x, seeds[0])
    scale = tf.random.stateless_uniform([], seeds[1], 0.8, 1.0)
    ch = tf.cast(tf.round(scale * h), tf.int32)
    cw = tf.cast(tf.round(scale * w), tf.int32)
    x = tf.image.stateless_random_crop(x, tf.stack([ch, cw, 3]), seeds[2])
    x = tf.image.resize(x, (h, w), method="bilinear")
    x = tf.image.stateless_random_brightness(x, 25.5, seeds[3])
    return tf.clip_by_value(x, 0.0, 255.0)
