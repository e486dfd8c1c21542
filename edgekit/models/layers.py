"""edgekit's own Keras layers, defined (and registered for loading) when this module is imported.

Importing it imports Keras; the model builders and the one Keras loader (edgekit.bundle.keras_model)
do, so a saved model that uses these layers loads anywhere edgekit is installed.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="edgekit")
class ZeroPadShortcut(keras.layers.Layer):
    """ResNet shortcut option A: x[:, ::s, ::s, :] with the new channels filled by zeros."""

    def __init__(self, filters: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.stride = stride

    def call(self, x):
        if self.stride > 1:
            x = x[:, :: self.stride, :: self.stride, :]
        extra = self.filters - x.shape[-1]
        if extra > 0:
            x = keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
        return x

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        s = self.stride
        h = None if h is None else (h + s - 1) // s
        w = None if w is None else (w + s - 1) // s
        return (n, h, w, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stride": self.stride}
