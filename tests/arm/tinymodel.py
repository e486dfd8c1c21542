"""The tiny bundle's MobileNet with a non-zero classifier bias, for the emulated-device tests.

Run as a script (in its own process: it imports TensorFlow). The converter drops an all-zero
bias, and tflite-runtime 2.14 on ARM crashes on an int8 per-channel FULLY_CONNECTED without one
(see README, "Emulated aarch64"); a trained model always has one, an untrained zoo model does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

BIAS = (0.05, -0.05, 0.02)  # small next to the logits' spread (about 6): predictions stay varied


def save(source: Path, out: Path) -> None:
    """`source` (a bundle's float_model.keras) with BIAS as its classifier's bias, saved to `out`."""
    import keras

    model = keras.models.load_model(source, compile=False)
    head = [layer for layer in model.layers if getattr(layer, "bias", None) is not None][-1]
    head.bias.assign(np.asarray(BIAS, dtype=np.float32))
    model.save(out)


if __name__ == "__main__":
    save(Path(sys.argv[1]), Path(sys.argv[2]))
