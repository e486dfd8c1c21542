"""BatchNorm moving statistics set from real activations.

After a short training run (or with random weights) the moving mean/variance can be far from the
statistics the weights actually produce, and the saved model then predicts near chance. Running a few
batches in training mode with momentum 0 makes the moving statistics equal to those of the data.
"""

from __future__ import annotations

import numpy as np


def batchnorm_layers(model) -> list:
    from keras import layers

    out = []
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            out.append(layer)
        elif hasattr(layer, "layers"):
            out.extend(batchnorm_layers(layer))
    return out


def recalibrate_batchnorm(model, x: np.ndarray, batch_size: int = 64) -> int:
    """Set every BN layer's moving statistics from `x` (cumulative average over batches).

    Returns the number of BN layers updated. Weights other than the moving statistics are unchanged.
    """
    bns = batchnorm_layers(model)
    if not bns or len(x) == 0:
        return 0
    saved = [bn.momentum for bn in bns]
    try:
        n_batches = 0
        sums = None
        for start in range(0, len(x), batch_size):
            for bn in bns:
                bn.momentum = 0.0
            model(x[start : start + batch_size], training=True)
            stats = [(np.asarray(bn.moving_mean), np.asarray(bn.moving_variance)) for bn in bns]
            sums = (
                stats
                if sums is None
                else [(a + m, b + v) for (a, b), (m, v) in zip(sums, stats, strict=True)]
            )
            n_batches += 1
        for bn, (m, v) in zip(bns, sums, strict=True):
            bn.moving_mean.assign(m / n_batches)
            bn.moving_variance.assign(v / n_batches)
    finally:
        for bn, mom in zip(bns, saved, strict=True):
            bn.momentum = mom
    return len(bns)
