"""ResNet-18/34 with basic blocks (He et al. 2015): a stem, then the stages given by the block counts
(the `stack` of Keras' ResNet(stack_fn), fixed per depth), then global pooling and the classifier.

Shortcut options of the paper (section 4.1):
  A  identity; where the shape changes, subsample spatially and zero-pad the extra channels
     (parameter-free),
  B  1x1 projection (+BN) only where the shape changes, identity elsewhere (default),
  C  1x1 projection (+BN) on every shortcut.
"""

from __future__ import annotations

from edgekit.config import ModelConfig

STAGES = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
WIDTHS = (64, 128, 256, 512)


def _basic_block(x, filters: int, stride: int, shortcut: str, name: str):
    from keras import layers  # noqa: PLC0415

    shape_changes = stride != 1 or x.shape[-1] != filters
    if shortcut == "C" or (shortcut == "B" and shape_changes):
        sc = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        sc = layers.BatchNormalization(name=f"{name}_proj_bn")(sc)
    elif shape_changes:  # option A
        from edgekit.models.layers import ZeroPadShortcut  # noqa: PLC0415

        sc = ZeroPadShortcut(filters, stride, name=f"{name}_pad")(x)
    else:
        sc = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([sc, y])
    return layers.ReLU(name=f"{name}_out")(y)


def _stack(x, stages: tuple[int, ...], shortcut: str):
    for s, (blocks, filters) in enumerate(zip(stages, WIDTHS, strict=True), start=2):
        for b in range(blocks):
            stride = 2 if (b == 0 and s > 2) else 1
            x = _basic_block(x, filters, stride, shortcut, name=f"conv{s}_block{b + 1}")
    return x


def build_resnet(cfg: ModelConfig, stages: tuple[int, ...]):
    from keras import layers, models  # noqa: PLC0415

    shortcut = (cfg.shortcut or "B").upper()
    inputs = layers.Input((cfg.resolution, cfg.resolution, 3), name="input")
    x = layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.ReLU(name="conv1_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = _stack(x, stages, shortcut)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = layers.Dense(cfg.classes, name="logits")(x)
    return models.Model(
        inputs, outputs, name=cfg.family if shortcut == "B" else f"{cfg.family}_{shortcut.lower()}"
    )


def build_resnet18(cfg: ModelConfig):
    return build_resnet(cfg, STAGES["resnet18"])


def build_resnet34(cfg: ModelConfig):
    return build_resnet(cfg, STAGES["resnet34"])
