"""Any ONNX classifier as a weight source, through edgekit's own importer (what `edgekit convert` reads)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.tf


def test_onnx_classifier_through_the_importer(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch makes the ONNX model")
    onnxruntime = pytest.importorskip("onnxruntime")
    import keras

    from edgekit.pipeline.weights import feature_tensor, resolve
    from tests.onnx import torch_models

    torch.manual_seed(0)
    net = torch_models.SeparableTiny(classes=3).eval()
    path = tmp_path / "separable.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch_models.export(net, path, keep_batchnorm=False)
    src = resolve(str(path))
    assert src.extra["weights"]["kind"] == "onnx" and src.config.classes == 3
    x = np.random.default_rng(0).normal(size=(4, *src.keras_model.input_shape[1:])).astype(np.float32)
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x.transpose(0, 3, 1, 2)})[0]
    got = src.keras_model.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())
    feats = keras.Model(src.keras_model.input, feature_tensor(src.keras_model)).predict(x, verbose=0)
    assert feats.ndim == 2 and feats.shape[0] == 4  # the head's input, ready for a new classifier
