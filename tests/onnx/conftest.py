"""Fixtures for the ONNX tests: real digits, small PyTorch models trained on them, exported to ONNX."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import _mnist_digits, write_digit_folder

CLASSES = (0, 1, 2)
PREP = {"size": [32, 32], "mean": [127.5] * 3, "std": [127.5] * 3}


def torch_or_skip():
    """torch 2.13.0 (CPU wheel) is installed by scripts/setup.sh; skip only when it truly is not."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"torch is not installed ({exc}); scripts/setup.sh installs torch==2.13.0 (CPU)")


@pytest.fixture(scope="session")
def train_xy():
    """300 real digits (3 classes) preprocessed exactly as edgekit does, for training."""
    from PIL import Image

    from edgekit.device_scripts import edgelib

    x, y = _mnist_digits()
    xs, ys = [], []
    for c in CLASSES:
        for i in np.flatnonzero(y == c)[100:200]:
            img = np.asarray(Image.fromarray(x[i]).convert("RGB").resize((32, 32), Image.BILINEAR))
            xs.append(edgelib.preprocess(img, PREP))
            ys.append(CLASSES.index(c))
    return np.stack(xs).astype(np.float32), np.array(ys)


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory) -> Path:
    """60 real digits (not in the training set) as PNG files: calibration and verification."""
    return write_digit_folder(
        tmp_path_factory.mktemp("onnx_calib"), classes=CLASSES, per_class=20, offset=300
    )


def _trained_onnx(tmp_path_factory, train_xy, cls_name: str, keep_batchnorm: bool) -> Path:
    torch_or_skip()
    import torch

    from tests.onnx import torch_models

    torch.manual_seed(0)
    model = getattr(torch_models, cls_name)(classes=len(CLASSES))
    acc = torch_models.train(model, *train_xy)
    assert acc > 0.9, f"{cls_name} did not learn the digits (train accuracy {acc:.2f})"
    path = tmp_path_factory.mktemp("onnx") / f"{cls_name.lower()}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch_models.export(model, path, keep_batchnorm=keep_batchnorm)
    return path


@pytest.fixture(scope="session")
def resnet_onnx(tmp_path_factory, train_xy) -> Path:
    """ResNet-style (residual adds), BatchNorm left in the graph for the importer to fold."""
    return _trained_onnx(tmp_path_factory, train_xy, "ResNetTiny", keep_batchnorm=True)


@pytest.fixture(scope="session")
def separable_onnx(tmp_path_factory, train_xy) -> Path:
    """Depthwise-separable (MobileNet v1 blocks, ReLU6 as Clip), BatchNorm folded by PyTorch."""
    return _trained_onnx(tmp_path_factory, train_xy, "SeparableTiny", keep_batchnorm=False)


@pytest.fixture(scope="session")
def separable_bn_onnx(tmp_path_factory, train_xy) -> Path:
    """The depthwise-separable network with its BatchNorm nodes left in the ONNX graph."""
    return _trained_onnx(tmp_path_factory, train_xy, "SeparableTiny", keep_batchnorm=True)
