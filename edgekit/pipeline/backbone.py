"""A pretrained backbone with a new head: what `edgekit train --weights` trains (see pipeline.transfer).

The source (edgekit.pipeline.weights: ImageNet files, a .tflite, a .keras, a run folder, ...) brings
a classifier and the input normalisation its weights expect. Its head is cut off at the global
pooling layer and a new one is put on: dropout, then a Dense `logits` layer with one output per
class of the data. `--fine-tune` says which backbone layers may train in stage 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from edgekit.config import ModelConfig, Preprocessing
from edgekit.errors import ModelFileError, UsageError

HEAD_DROPOUT = 0.2
DEFAULT_FINE_TUNE = "none"
HEAD_LAYERS = ("head_dropout", "logits")
FEATURE_LAYER = "global_pool"  # the zoo models' last backbone layer
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
    config: ModelConfig  # the architecture at the training resolution
    preprocessing: Preprocessing  # what the weights expect, at the training resolution
    record: dict  # where the weights came from (run.json → transfer.source, then the manifest)


def open_source(weights: str, want: ModelConfig | None, progress=lambda _m: None) -> Backbone:
    """Load `weights` through edgekit.pipeline.weights and check it against what the flags asked.

    `want` None, or any of its fields None: taken from the weights. Family, α and shortcut must match
    the weights; another resolution is allowed (the convolutions do not depend on it) and noted."""
    from edgekit.config import ExportConfig  # noqa: PLC0415
    from edgekit.models import resolve_config  # noqa: PLC0415
    from edgekit.pipeline.weights import load_weights  # noqa: PLC0415

    family, alpha, res, shortcut = (getattr(want, k, None) for k in ("family", "alpha", "resolution", "shortcut"))
    progress(f"loading pretrained weights from {weights}")
    asked = resolve_config(family or "mobilenet", alpha=alpha, resolution=res, shortcut=shortcut)
    src = load_weights(ExportConfig(model=asked, weights=weights))
    got = src.config
    given = ModelConfig(
        family or got.family,
        classes=got.classes,
        resolution=res or got.resolution,
        alpha=alpha if alpha is not None else got.alpha,
        shortcut=shortcut or got.shortcut,
    )
    mismatch = fits(got, given)
    if mismatch:
        raise ModelFileError(
            f"--weights {weights}: {mismatch}",
            hint="leave out --model/--alpha/--shortcut to take the weights' architecture, or pass weights that fit",
        )
    res = given.resolution
    record = {
        "weights": str(weights),
        "origin": src.origin,
        "model": got.to_dict(),
        "classes": int(src.keras_model.output_shape[-1]),
        **{k: v for k, v in src.extra.items() if isinstance(v, (str, int, float, bool)) or v is None},
    }
    if res != got.resolution:
        record["note"] = f"weights trained at {got.resolution} px, fine-tuned at {res} px"
    return Backbone(src.keras_model, got.with_(resolution=res), replace(src.preprocessing, size=(res, res)), record)


def fits(source: ModelConfig, cell: ModelConfig) -> str | None:
    """Why weights of architecture `source` cannot initialise `cell` (None: they can)."""
    same = source.family == cell.family
    if same and source.family == "mobilenet_v1":
        same = abs((source.alpha or 1.0) - (cell.alpha or 1.0)) < 1e-9
    if same and source.shortcut and cell.shortcut:
        same = source.shortcut == cell.shortcut
    return None if same else f"the weights are {_arch(source)}; {_arch(cell)} was asked for"


def _arch(m: ModelConfig) -> str:
    if m.family == "mobilenet_v1":
        return f"MobileNet v1 α={m.alpha or 1.0:g}"
    return m.family + (f" (shortcut {m.shortcut})" if m.shortcut else "")


# --------------------------------------------------------------------------- the model


def _features(model, origin: str):
    """The tensor the new head goes on: the zoo's global pooling output, else the last such layer's."""
    import keras  # noqa: PLC0415

    if FEATURE_LAYER in {layer.name for layer in model.layers}:
        return model.get_layer(FEATURE_LAYER).output
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    if pools:
        return pools[-1].output
    raise ModelFileError(
        f"{origin}: no global pooling layer to put a new head on (the model ends with "
        f"{', '.join(layer.name for layer in model.layers[-3:])})",
        hint="pass a MobileNet v1 or ResNet classifier (see `edgekit models`)",
    )


def at_resolution(model, resolution: int):
    """The same network (same layers' weights) for another square input side."""
    import keras  # noqa: PLC0415

    if model.input_shape[1] == resolution:
        return model
    cfg = model.get_config()
    for layer in cfg["layers"]:
        if layer["class_name"] == "InputLayer":
            c = layer["config"]
            key = "batch_shape" if "batch_shape" in c else "batch_input_shape"
            c[key] = [c[key][0], resolution, resolution, c[key][3]]
    other = keras.Model.from_config(cfg)
    other.set_weights(model.get_weights())
    return other


def transfer_model(backbone: Backbone, classes: int, name: str):
    """The backbone (layers shared with the source) with a new head of `classes` outputs."""
    import keras  # noqa: PLC0415

    base = at_resolution(backbone.model, backbone.config.resolution)
    x = keras.layers.Dropout(HEAD_DROPOUT, name=HEAD_LAYERS[0])(_features(base, backbone.record["weights"]))
    out = keras.layers.Dense(classes, name=HEAD_LAYERS[1])(x)
    return keras.Model(base.inputs, out, name=name)


def backbone_weighted(model) -> list:
    """The backbone's layers with weights, input to output, BatchNorm left out (it stays frozen)."""
    import keras  # noqa: PLC0415

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
    import keras  # noqa: PLC0415

    if all(getattr(layer.dtype_policy, "name", policy) == policy for layer in model.layers[1:]):
        return model
    cfg = model.get_config()
    for layer in cfg["layers"]:
        if layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = policy
    other = keras.Model.from_config(cfg)
    other.set_weights(model.get_weights())
    return other
