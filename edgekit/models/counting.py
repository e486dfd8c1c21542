"""Parameters and multiply-accumulates counted from a built Keras graph (no hard-coded table).

MACs follow the papers' convention: one multiply-add per weight use in convolutions and dense layers;
BatchNorm, activations, pooling and additions are not counted.
"""

from __future__ import annotations

import math


def count_macs(model) -> int:
    from keras import layers

    total = 0
    for layer in _all_layers(model):
        if isinstance(layer, layers.DepthwiseConv2D):
            kh, kw, cin, mult = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += h * w * kh * kw * cin * mult
        elif isinstance(layer, layers.Conv2D):
            kh, kw, cin_per_group, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += h * w * kh * kw * cin_per_group * cout
        elif isinstance(layer, layers.Dense):
            cin, cout = layer.kernel.shape
            lead = math.prod(d for d in layer.output.shape[1:-1] if d) if len(layer.output.shape) > 2 else 1
            total += lead * cin * cout
    return int(total)


def count_params(model) -> int:
    return int(model.count_params())


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # nested models
            yield from _all_layers(layer)
        else:
            yield layer
