"""torchvision ResNet-18 weights (state dict or ONNX export) on the zoo ResNet, against PyTorch itself.

The torchvision layout is written out in plain torch (tests/weights/torch_resnet.py): torchvision
itself need not be installed, and nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.config import WeightsRequest
from edgekit.errors import ModelFileError

pytestmark = pytest.mark.tf
torch = pytest.importorskip("torch", reason="PyTorch (the reference) is not installed")

RES = 64
REL_TOL = 1e-4  # pinned: float32 Keras vs PyTorch, relative to the largest logit


@pytest.fixture(scope="module")
def torch_resnet18():
    from tests.weights.torch_resnet import ResNet, randomised

    torch.manual_seed(0)
    return randomised(ResNet((2, 2, 2, 2), num_classes=10))


@pytest.fixture(scope="module")
def images():
    # Odd-sized maps appear at 65 px too; 64 px is where 'same' vs symmetric padding differs most.
    return np.random.default_rng(0).normal(size=(3, RES, RES, 3)).astype(np.float32)


def _torch_out(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_state_dict_gives_pytorch_outputs(torch_resnet18, images, tmp_path):
    from edgekit.pipeline.weights import resolve

    p = tmp_path / "resnet18.pth"
    torch.save(torch_resnet18.state_dict(), p)
    src = resolve(str(p), WeightsRequest(resolution=RES))
    assert (src.config.family, src.config.shortcut, src.config.classes) == ("resnet18", "B", 10)
    want = _torch_out(torch_resnet18, images)
    got = src.keras_model.predict(images, verbose=0)
    assert _rel(got, want) <= REL_TOL
    w = src.extra["weights"]
    assert w["kind"] == "torchvision" and w["normalisation"] == "ImageNet mean/std"
    assert src.preprocessing.mean == pytest.approx((123.675, 116.28, 103.53))
    assert src.preprocessing.std == pytest.approx((58.395, 57.12, 57.375))


def test_keras_same_padding_would_not_reproduce_pytorch(torch_resnet18, images, tmp_path):
    """Why the zoo model is built with symmetric padding: the same weights in 'same' layers differ."""
    from pathlib import Path

    from edgekit.config import ModelConfig
    from edgekit.models import resnet
    from edgekit.pipeline.weights import torchvision

    sd = {k: v.numpy() for k, v in torch_resnet18.state_dict().items()}
    _, _, weights = torchvision.zoo_weights_from_state_dict(sd, Path("x.pth"))
    plain = resnet.build_resnet(ModelConfig("resnet18", classes=10, resolution=RES, shortcut="B"), resnet.STAGES["resnet18"])
    for name, arrays in weights.items():
        plain.get_layer(name).set_weights(arrays)
    assert _rel(plain.predict(images, verbose=0), _torch_out(torch_resnet18, images)) > 100 * REL_TOL


@pytest.mark.parametrize("keep_bn", [False, True], ids=["bn_folded", "bn_nodes"])
def test_onnx_export_gives_pytorch_outputs(torch_resnet18, images, tmp_path, keep_bn):
    pytest.importorskip("onnx")
    from edgekit.pipeline.weights import resolve

    p = tmp_path / "resnet18.onnx"
    # The default export folds BatchNorm into the Conv; PRESERVE without folding keeps BN nodes.
    kw = {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False} if keep_bn else {}
    torch.onnx.export(torch_resnet18, torch.zeros(1, 3, RES, RES), p, dynamo=False, **kw)
    if keep_bn:
        import onnx

        assert "BatchNormalization" in {n.op_type for n in onnx.load(p).graph.node}
    src = resolve(str(p), WeightsRequest(resolution=RES))
    assert src.config.family == "resnet18" and src.extra["weights"]["kind"] == "torchvision_onnx"
    assert _rel(src.keras_model.predict(images, verbose=0), _torch_out(torch_resnet18, images)) <= REL_TOL


def test_wrong_depth_bottleneck_and_corrupt_files_are_named(torch_resnet18, tmp_path):
    from edgekit.pipeline.weights import resolve, torchvision

    p = tmp_path / "r18.pth"
    torch.save(torch_resnet18.state_dict(), p)
    with pytest.raises(ModelFileError, match=r"holds a resnet18; --model asked for resnet34"):
        resolve(str(p), WeightsRequest(family="resnet34"))
    with pytest.raises(ModelFileError, match=r"has 10 classes; 1000 were asked for"):
        resolve(str(p), WeightsRequest(classes=1000))
    fake = {"conv1.weight": np.zeros((64, 3, 7, 7)), "layer1.0.conv3.weight": np.zeros(1), "fc.weight": np.zeros((2, 2))}
    with pytest.raises(ModelFileError, match="bottleneck ResNet"):
        torchvision.zoo_weights_from_state_dict(fake, p)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(p.read_bytes()[:3000])
    with pytest.raises(ModelFileError, match="cut.pth: not a zip-format torch.save file"):
        resolve(str(cut))
    other = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(3)}, other)
    with pytest.raises(ModelFileError, match="not a torchvision ResNet-18/34 state dict"):
        resolve(str(other))
