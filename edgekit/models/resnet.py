"""ResNet-18/34 with basic blocks (He et al. 2015): a stem, then the stages given by the block counts
(the `stack` of Keras' ResNet(stack_fn), fixed per depth), then global pooling and the classifier.

Shortcut options of the paper (section 4.1):
  A  identity; where the shape changes, subsample spatially and zero-pad the extra channels
     (parameter-free),
  B  1x1 projection (+BN) only where the shape changes, identity elsewhere (default),
  C  1x1 projection (+BN) on every shortcut.

`torch_padding=True` builds the layout torchvision's weights need: PyTorch pads its stride-2
convolutions and the max pool symmetrically (k // 2 on every side) where Keras 'same' pads only the
bottom/right, so those layers get an explicit ZeroPadding2D + 'valid' (zero padding is exact for the
max pool: it follows a ReLU), and BatchNorm uses PyTorch's epsilon 1e-5.
"""

from __future__ import annotations

from edgekit.config import ModelConfig

STAGES = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
WIDTHS = (64, 128, 256, 512)


TORCH_BN_EPSILON = 1e-5


def _conv(x, filters: int, kernel: int, stride: int, name: str, torch_padding: bool):
    """A bias-free conv with 'same' output size; PyTorch's symmetric padding where that differs."""
    from keras import layers

    if torch_padding and stride > 1 and kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        return layers.Conv2D(filters, kernel, strides=stride, use_bias=False, name=name)(x)
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)


def _bn(x, name: str, torch_padding: bool):
    from keras import layers

    return layers.BatchNormalization(epsilon=TORCH_BN_EPSILON if torch_padding else 1e-3, name=name)(x)


def _basic_block(x, filters: int, stride: int, shortcut: str, name: str, torch_padding: bool = False):
    from keras import layers

    shape_changes = stride != 1 or x.shape[-1] != filters
    if shortcut == "C" or (shortcut == "B" and shape_changes):
        sc = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        sc = _bn(sc, f"{name}_proj_bn", torch_padding)
    elif shape_changes:  # option A
        from edgekit.models.layers import ZeroPadShortcut

        sc = ZeroPadShortcut(filters, stride, name=f"{name}_pad")(x)
    else:
        sc = x
    y = _conv(x, filters, 3, stride, f"{name}_conv1", torch_padding)
    y = _bn(y, f"{name}_bn1", torch_padding)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(y, filters, 3, 1, f"{name}_conv2", torch_padding)
    y = _bn(y, f"{name}_bn2", torch_padding)
    y = layers.Add(name=f"{name}_add")([sc, y])
    return layers.ReLU(name=f"{name}_out")(y)


def _stack(x, stages: tuple[int, ...], shortcut: str, torch_padding: bool = False):
    for s, (blocks, filters) in enumerate(zip(stages, WIDTHS, strict=True), start=2):
        for b in range(blocks):
            stride = 2 if (b == 0 and s > 2) else 1
            x = _basic_block(x, filters, stride, shortcut, f"conv{s}_block{b + 1}", torch_padding)
    return x


def build_resnet(cfg: ModelConfig, stages: tuple[int, ...], torch_padding: bool = False):
    from keras import layers, models

    shortcut = (cfg.shortcut or "B").upper()
    inputs = layers.Input((cfg.resolution, cfg.resolution, 3), name="input")
    x = _conv(inputs, 64, 7, 2, "conv1", torch_padding)
    x = _bn(x, "conv1_bn", torch_padding)
    x = layers.ReLU(name="conv1_relu")(x)
    if torch_padding:
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    else:
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = _stack(x, stages, shortcut, torch_padding)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = layers.Dense(cfg.classes, name="logits")(x)
    return models.Model(
        inputs, outputs, name=cfg.family if shortcut == "B" else f"{cfg.family}_{shortcut.lower()}"
    )


def build_resnet18(cfg: ModelConfig, torch_padding: bool = False):
    return build_resnet(cfg, STAGES["resnet18"], torch_padding)


def build_resnet34(cfg: ModelConfig, torch_padding: bool = False):
    return build_resnet(cfg, STAGES["resnet34"], torch_padding)
