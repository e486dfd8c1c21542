"""Small PyTorch image classifiers, trained on real digits and exported to ONNX by the tests.

A ResNet-style network (residual additions, projection shortcut, max pool) and a depthwise-separable
one (MobileNet v1 blocks with ReLU6), NCHW like every PyTorch export. Trained for a few seconds so
their logits separate classes: int8 agreement on random weights says nothing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.short is None else self.short(x)))


class ResNetTiny(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        self.layer1 = _Block(8, 8, 1)
        self.layer2 = _Block(8, 16, 2)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU6(),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(),
    )


class SeparableTiny(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU6(),
            _separable(8, 16, 1),
            _separable(16, 32, 2),
            _separable(32, 32, 1),
        )
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def train(model: nn.Module, x_nhwc: np.ndarray, y: np.ndarray, epochs: int = 8, seed: int = 0) -> float:
    """A few epochs of Adam on normalised NHWC images; returns training accuracy (eval mode)."""
    torch.manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    t = torch.from_numpy(y.astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(t))
        for i in range(0, len(t), 32):
            idx = perm[i : i + 32]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), t[idx]).backward()
            opt.step()
    # BatchNorm running statistics after a few dozen steps lag the weights: recompute them exactly
    # (cumulative average over the data) so eval mode predicts like the trained network.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        for i in range(0, len(t), 64):
            model(x[i : i + 64])
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == t).float().mean())


def export(model: nn.Module, path, size: int = 32, keep_batchnorm: bool = False) -> None:
    """Legacy (TorchScript) ONNX export, opset 17, dynamic batch.

    keep_batchnorm leaves BatchNormalization nodes in the graph (constant folding off) so the
    importer's own folding is exercised; the default lets PyTorch fold them, as most exports do.
    """
    model.eval()
    kwargs = {}
    if keep_batchnorm:
        kwargs = {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False}
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, size, size),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        **kwargs,
    )
