"""Write Keras-2 legacy weight files (what Keras publishes for MobileNet v1) from a Keras model."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def randomise_batchnorm(model, seed: int = 0) -> None:
    """BatchNorm statistics far from the defaults, so a mis-mapped layer changes the outputs."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = (w.shape for w in layer.get_weights())
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, g).astype(np.float32),
                    rng.normal(0, 0.2, b).astype(np.float32),
                    rng.normal(0, 0.2, m).astype(np.float32),
                    rng.uniform(0.5, 1.5, v).astype(np.float32),
                ]
            )


def write_legacy_h5(model, path: Path) -> Path:
    """`model.save_weights` as Keras 2 wrote it: root `layer_names`, one group per layer (every layer,
    weightless ones with an empty `weight_names`), datasets at `<layer>/<layer>/<weight>:0`."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in model.layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            g = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
            for n, w in zip(names, layer.get_weights(), strict=True):
                g.create_dataset(n, data=w)
    return path
