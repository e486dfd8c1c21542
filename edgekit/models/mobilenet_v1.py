"""MobileNet v1 as in Howard et al. 2017, Table 1.

conv 3x3/2 (32·α) then 13 depthwise-separable blocks (3x3 depthwise + BN + ReLU6, 1x1 pointwise + BN +
ReLU6), global average pool, dropout, 1x1 classifier producing logits.

ReLU6 rather than ReLU: its bounded range gives int8 activations a fixed, tight scale, which is why
the TFLite reference models use it. ρ only sets the input size (224·ρ); the layers are the same.
Outputs are logits: a softmax quantized to int8 (scale 1/256) flattens small probabilities into ties,
so the device applies softmax after dequantizing.
"""

from __future__ import annotations

from edgekit.config import ModelConfig

# (pointwise filters at alpha=1, depthwise stride) for the 13 separable blocks of Table 1.
BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def _width(filters: int, alpha: float) -> int:
    return max(1, int(filters * alpha))


def build(cfg: ModelConfig, dropout: float = 1e-3):
    from keras import layers, models

    alpha = cfg.alpha or 1.0
    inputs = layers.Input((cfg.resolution, cfg.resolution, 3), name="input")
    x = layers.Conv2D(_width(32, alpha), 3, strides=2, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.ReLU(6.0, name="conv1_relu")(x)
    for i, (filters, stride) in enumerate(BLOCKS, start=1):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"conv_dw_{i}")(x)
        x = layers.BatchNormalization(name=f"conv_dw_{i}_bn")(x)
        x = layers.ReLU(6.0, name=f"conv_dw_{i}_relu")(x)
        x = layers.Conv2D(_width(filters, alpha), 1, use_bias=False, name=f"conv_pw_{i}")(x)
        x = layers.BatchNormalization(name=f"conv_pw_{i}_bn")(x)
        x = layers.ReLU(6.0, name=f"conv_pw_{i}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(cfg.classes, name="logits")(x)
    name = f"mobilenet_v1_{round(alpha * 100):03d}_{cfg.resolution}"
    return models.Model(inputs, outputs, name=name)
