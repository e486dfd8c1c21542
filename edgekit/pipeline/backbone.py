"""A pretrained backbone with a new head: what `edgekit train --weights` trains (see pipeline.transfer).

The source (edgekit.pipeline.weights: ImageNet files, a .tflite, a .keras, a run folder, ...) brings
a classifier and the input normalisation its weights expect. Its head is cut off at the global
pooling layer and a new one is put on: dropout, then a Dense `logits` layer with one output per
class of the data. `--fine-tune` says which backbone layers may train in stage 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgekit.config import ModelConfig, Preprocessing
from edgekit.errors import UsageError

HEAD_DROPOUT = 0.2
# Peak learning rate of stage 1: a linear head on frozen features converges in a few epochs at 1e-2 (at
# 1e-3 it was still climbing after 20 epochs on ants-bees).
HEAD_LR = 1e-2
# Stage 2 on ants-bees (MobileNet 0.25/128, 3 seeds, benchmarks/bench_transfer.py): at a tenth of the
# head's rate (1e-3) it never beat stage 1; at a hundredth (1e-4) it never moved; at 3e-4 the top half
# of the backbone added about 1.3 points float top-1 and kept int8 within a point (all layers: less,
# and int8 drifted further from float).
FINE_TUNE_LR_FACTOR = 0.03
DEFAULT_FINE_TUNE = "top-50%"
DEFAULT_FINE_TUNE_EPOCHS = 15
HEAD_LAYERS = ("head_dropout", "logits")
_TOP = re.compile(r"^top-(\d+(?:\.\d+)?)%$")


@dataclass(frozen=True)
class FineTune:
    """`--fine-tune`: none, top-N% (of the backbone's weighted layers, output side first) or all."""

    fraction: float  # 0 = none, 1 = all

    @classmethod
    def parse(cls, text: str) -> FineTune:
        t = str(text).strip().lower()
        if t == "none":
            return cls(0.0)
        if t == "all":
            return cls(1.0)
        m = _TOP.match(t)
        if m and 0 < float(m.group(1)) <= 100:
            return cls(float(m.group(1)) / 100)
        raise UsageError(f"--fine-tune must be none, top-N% (0 < N <= 100) or all; received {text!r}")

    def __str__(self) -> str:
        if self.fraction == 0:
            return "none"
        return "all" if self.fraction == 1 else f"top-{self.fraction * 100:g}%"

    def count(self, n_layers: int) -> int:
        return 0 if self.fraction == 0 else max(1, int(round(n_layers * self.fraction)))


# --------------------------------------------------------------------------- the source


@dataclass(frozen=True, eq=False)
class Backbone:
    model: object  # the source's Keras classifier (its head is cut off in transfer_model)
    config: ModelConfig  # the weights' architecture
    preprocessing: Preprocessing  # the normalisation the weights expect
    record: dict  # provenance (edgekit.pipeline.weights): run.json → weights, then the manifest


def open_source(weights: str, request=None, check_data: str | None = None, progress=lambda _m: None) -> Backbone:
    """The pretrained model for `weights` (edgekit.pipeline.weights, purpose backbone: the class count
    may differ, ImageNet MobileNets come from the no_top file). Flags in `request` (a WeightsRequest of
    what was given explicitly) must agree with the weights; each mismatch is one line, raised before
    anything is written. `check_data`: photos a `.tflite` source is checked against."""
    from edgekit.pipeline.weights import backbone
    from edgekit.pipeline.weights.common import check_request

    progress(f"loading pretrained weights from {weights}")
    src = backbone(weights, request, check_data=check_data, progress=progress)
    if request is not None:  # every source, run and bundle folders included, answers to the flags
        check_request(src.config, request, str(weights), "backbone")
    record = {"spec": str(weights), "origin": src.origin, **(src.extra.get("weights") or {})}
    record["model"] = src.config.to_dict()
    return Backbone(src.keras_model, src.config, src.preprocessing, record)


def unfit_cells(weights: str, cells: list[ModelConfig], check_data: str | None = None, progress=lambda _m: None):
    """For a sweep: why `weights` cannot start each cell (None where it can). `imagenet`: the cells
    without published weights; a file: the cells whose architecture, α or resolution it does not hold."""
    from edgekit.config import WeightsRequest
    from edgekit.errors import EdgekitError

    if str(weights).lower() == "imagenet":
        from edgekit.pipeline.weights import imagenet

        out = []
        for c in cells:
            try:
                if c.family == "mobilenet_v1":
                    imagenet.mobilenet_file(c.alpha or 1.0, c.resolution, top=False)
                else:
                    imagenet.torchvision_file(c.family)
                out.append(None)
            except EdgekitError as exc:
                out.append(exc.message)
        return out
    from edgekit.pipeline.weights.common import check_request

    found = open_source(weights, None, check_data, progress).config
    out = []
    for c in cells:
        try:
            check_request(found, WeightsRequest(c.family, c.alpha, c.resolution), str(weights), "backbone")
            out.append(None)
        except EdgekitError as exc:
            out.append(exc.message)
    return out


# --------------------------------------------------------------------------- the model


def transfer_model(backbone: Backbone, classes: int, name: str):
    """The backbone (layers shared with the source) with a new head of `classes` outputs."""
    import keras

    from edgekit.pipeline.weights import feature_tensor

    x = keras.layers.Dropout(HEAD_DROPOUT, name=HEAD_LAYERS[0])(feature_tensor(backbone.model))
    out = keras.layers.Dense(classes, name=HEAD_LAYERS[1])(x)
    return keras.Model(backbone.model.inputs, out, name=name)


def backbone_weighted(model) -> list:
    """The backbone's layers with weights, input to output, BatchNorm left out (it stays frozen)."""
    import keras

    return [
        layer
        for layer in model.layers
        if layer.name not in HEAD_LAYERS
        and layer.weights
        and not isinstance(layer, keras.layers.BatchNormalization)
    ]


def freeze_for_stage(model, stage: int, fine_tune: FineTune) -> list[str]:
    """Stage 1: only the head trains. Stage 2: the head and the top layers `fine_tune` names.

    A frozen Keras BatchNormalization layer runs in inference mode (moving statistics, no updates)
    even when the model is called with training=True; every BN layer stays frozen in both stages.
    Returns the names of the backbone layers that train."""
    for layer in model.layers:
        layer.trainable = layer.name in HEAD_LAYERS
    if stage == 1:
        return []
    weighted = backbone_weighted(model)
    top = weighted[len(weighted) - fine_tune.count(len(weighted)) :]
    for layer in top:
        layer.trainable = True
    return [layer.name for layer in top]


def as_policy(model, policy: str):
    """The same model with every layer computing under `policy` (float32 to save a mixed-precision run)."""
    import keras

    if all(getattr(layer.dtype_policy, "name", policy) == policy for layer in model.layers[1:]):
        return model
    cfg = model.get_config()
    for layer in cfg["layers"]:
        if layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = policy
    other = keras.Model.from_config(cfg)
    other.set_weights(model.get_weights())
    return other
