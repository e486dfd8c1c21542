"""What export, train and sweep start from: a Keras model plus what it needs to describe itself.

`edgekit.pipeline.weights` makes one from a `--weights` source; `export.build_source` makes a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.config import ModelConfig, Preprocessing
from edgekit.data.datasets import ImageBatch


@dataclass(frozen=True)
class SourceModel:
    """What export starts from: a Keras model plus what it needs to describe itself."""

    keras_model: object
    config: ModelConfig
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    origin: str  # "random" or the weights path
    extra: dict  # anything the source knows (training history summary, data source, ...)
    calibration: ImageBatch | None = None  # the source's own calibration images (a run's training sample)
    eval_data: ImageBatch | None = None  # labelled held-out images for float vs int8 accuracy
