"""torchvision's ResNet-18/34 ImageNet weights on the zoo ResNet (option B), with PyTorch's numerics.

Two forms of the same weights:
  `.pth` / `.pt`  a state dict in torchvision's layout (conv1, bn1, layer{1..4}.{b}.conv1/bn1/conv2/bn2,
                  .downsample.0/.1, fc), read without PyTorch (edgekit.pipeline.weights.torchfile);
  `.onnx`         its ONNX export: Conv (+ BatchNormalization, or folded into the Conv's bias) nodes in
                  graph order, then Gemm.
The zoo model is built with `torch_padding=True` (explicit symmetric ZeroPadding2D + 'valid' where
Keras 'same' would pad bottom-right only, BatchNorm ε 1e-5), so it computes what PyTorch computes.
Input normalisation is torchvision's: RGB / 255, then ImageNet mean/std.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.config import ModelConfig, Preprocessing
from edgekit.errors import ModelFileError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BLOCKS = {(2, 2, 2, 2): "resnet18", (3, 4, 6, 3): "resnet34"}
TORCH_EPS = 1e-5


def torchvision_preprocessing(resolution: int) -> Preprocessing:
    """ImageNet mean/std on 0..255 pixels: (p/255 - m)/s = (p - 255m)/(255s)."""
    return Preprocessing(
        size=(resolution, resolution),
        mean=tuple(round(255 * m, 6) for m in IMAGENET_MEAN),
        std=tuple(round(255 * s, 6) for s in IMAGENET_STD),
    )


# --------------------------------------------------------------------------- the state dict


def _blocks(sd: dict, path: Path) -> tuple[int, ...]:
    counts = []
    for s in range(1, 5):
        n = 0
        while f"layer{s}.{n}.conv1.weight" in sd:
            n += 1
        counts.append(n)
    if any(k.endswith("conv3.weight") for k in sd):
        raise ModelFileError(
            f"--weights {path} is a bottleneck ResNet (conv3 layers: ResNet-50 or deeper); "
            "the zoo has ResNet-18/34 only"
        )
    if "conv1.weight" not in sd or "fc.weight" not in sd or tuple(counts) not in BLOCKS:
        raise ModelFileError(
            f"--weights {path} is not a torchvision ResNet-18/34 state dict (blocks per stage {counts}; "
            f"conv1 {'present' if 'conv1.weight' in sd else 'missing'}, fc "
            f"{'present' if 'fc.weight' in sd else 'missing'})"
        )
    return tuple(counts)


def zoo_weights_from_state_dict(sd: dict, path: Path) -> tuple[str, int, dict]:
    """(family, classes, {zoo layer name: [arrays]}) from a torchvision ResNet state dict."""
    family = BLOCKS[_blocks(sd, path)]
    out: dict[str, list[np.ndarray]] = {}

    def conv(key: str) -> list[np.ndarray]:
        return [sd[f"{key}.weight"].transpose(2, 3, 1, 0)]  # (out, in, kh, kw) -> (kh, kw, in, out)

    def bn(key: str) -> list[np.ndarray]:
        return [sd[f"{key}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]

    out["conv1"], out["conv1_bn"] = conv("conv1"), bn("bn1")
    for s in range(1, 5):
        b = 0
        while f"layer{s}.{b}.conv1.weight" in sd:
            t, z = f"layer{s}.{b}", f"conv{s + 1}_block{b + 1}"
            out[f"{z}_conv1"], out[f"{z}_bn1"] = conv(f"{t}.conv1"), bn(f"{t}.bn1")
            out[f"{z}_conv2"], out[f"{z}_bn2"] = conv(f"{t}.conv2"), bn(f"{t}.bn2")
            if f"{t}.downsample.0.weight" in sd:
                out[f"{z}_proj"], out[f"{z}_proj_bn"] = conv(f"{t}.downsample.0"), bn(f"{t}.downsample.1")
            b += 1
    out["logits"] = [sd["fc.weight"].T, sd["fc.bias"]]
    return family, int(sd["fc.weight"].shape[0]), out


# --------------------------------------------------------------------------- the ONNX export


def zoo_weights_from_onnx(model, path: Path) -> tuple[str, int, dict]:
    """The same mapping from an ONNX export: convolutions in graph order (BN explicit or folded)."""
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:  # constants exported as Constant nodes
        if node.op_type == "Constant" and node.attribute:
            init[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    convs, gemm = [], None
    for node in model.graph.node:
        if node.op_type == "Conv":
            w = init.get(node.input[1])
            if w is None:
                raise ModelFileError(f"--weights {path}: convolution {node.name} has no constant weights")
            bias = init.get(node.input[2]) if len(node.input) > 2 else None
            nxt = consumers.get(node.output[0], [])
            if len(nxt) == 1 and nxt[0].op_type == "BatchNormalization":
                g, b, m, v = (init[i] for i in nxt[0].input[1:5])
                eps = next((a.f for a in nxt[0].attribute if a.name == "epsilon"), 1e-5)
                if bias is not None:  # conv bias folded into the BN mean
                    m = m - bias
                bn = [g, b, m, v + (eps - TORCH_EPS)]
            else:  # BN folded into the conv: identity BN carrying the bias
                n = w.shape[0]
                bias = bias if bias is not None else np.zeros(n, np.float32)
                bn = [np.ones(n, np.float32), bias, np.zeros(n, np.float32), np.full(n, 1 - TORCH_EPS, np.float32)]
            convs.append((w, bn))
        elif node.op_type in ("Gemm", "MatMul"):
            gemm = node
    if gemm is None:
        raise ModelFileError(f"--weights {path} has no final Gemm/MatMul classifier: not a torchvision ResNet")
    fc_w = init[gemm.input[1]]
    trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0) if gemm.op_type == "Gemm" else 0
    fc_w = fc_w if trans_b else fc_w.T  # -> (out, in)
    fc_b = init.get(gemm.input[2]) if len(gemm.input) > 2 else np.zeros(fc_w.shape[0], np.float32)
    # Reassemble a state dict in torchvision's names and reuse its mapping (and its checks).
    sd: dict[str, np.ndarray] = {}
    names = _onnx_conv_names(convs, path)
    for name, (w, bn) in zip(names, convs, strict=True):
        bn_name = {"conv1": "bn1"}.get(name) or name.replace("conv", "bn").replace("downsample.0", "downsample.1")
        sd[f"{name}.weight"] = w
        for key, arr in zip(("weight", "bias", "running_mean", "running_var"), bn, strict=True):
            sd[f"{bn_name}.{key}"] = np.asarray(arr, np.float32)
    sd["fc.weight"], sd["fc.bias"] = fc_w, fc_b
    return zoo_weights_from_state_dict(sd, path)


def _onnx_conv_names(convs: list, path: Path) -> list[str]:
    """torchvision names for the convolutions in forward order: a block runs conv1, conv2, then its
    1x1 downsample (BasicBlock.forward), and a block starts where the channel count or stride may change."""
    if not convs or convs[0][0].shape[-1] != 7:
        raise ModelFileError(f"--weights {path} does not start with ResNet's 7x7 convolution")
    names, i, stage, block, prev_out = ["conv1"], 1, 1, 0, 64
    while i < len(convs):
        w1 = convs[i][0]
        if i + 1 >= len(convs):
            raise ModelFileError(f"--weights {path}: {len(convs)} convolutions fit no ResNet-18/34")
        out_ch = w1.shape[0]
        if out_ch != prev_out:
            stage, block = stage + 1, 0
        t = f"layer{stage}.{block}"
        names += [f"{t}.conv1", f"{t}.conv2"]
        i += 2
        if i < len(convs) and convs[i][0].shape[-1] == 1:
            names.append(f"{t}.downsample.0")
            i += 1
        prev_out, block = out_ch, block + 1
    return names


def build_zoo(family: str, classes: int, resolution: int, weights: dict, path: Path):
    from edgekit.models import resnet

    cfg = ModelConfig(family, classes=classes, resolution=resolution, shortcut="B")
    model = resnet.build_resnet(cfg, resnet.STAGES[family], torch_padding=True)
    for name, arrays in weights.items():
        layer = model.get_layer(name)
        want = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(a.shape) for a in arrays]
        if want != got:
            raise ModelFileError(f"--weights {path}: layer {name} expects {want}; the file has {got}")
        layer.set_weights([np.asarray(a, np.float32) for a in arrays])
    return model, cfg


# --------------------------------------------------------------------------- sources


def _source(path: Path, kind: str, fam_classes_weights, request, purpose: str, labels, extra=None):
    from edgekit.pipeline.source import SourceModel
    from edgekit.pipeline.weights.common import check_request, labels_for, provenance

    family, classes, weights = fam_classes_weights
    resolution = request.resolution or 224
    if request.family is not None and request.family != family:
        raise ModelFileError(f"--weights {path} holds a {family}; --model asked for {request.family}")
    model, cfg = build_zoo(family, classes, resolution, weights, path)
    check_request(cfg, request, str(path), purpose)
    rec = provenance(kind, path, padding="symmetric (PyTorch)", normalisation="ImageNet mean/std", **(extra or {}))
    prep = torchvision_preprocessing(resolution)
    return SourceModel(model, cfg, labels_for(classes, tuple(labels)), prep, str(path), {"weights": rec})


def from_state_dict(path: Path, request, purpose: str, labels, extra=None):
    from edgekit.pipeline.weights.torchfile import TorchFileError, read_state_dict

    try:
        sd = read_state_dict(path)
    except TorchFileError as exc:
        raise ModelFileError(f"--weights {path}: {exc}") from None
    return _source(path, "torchvision", zoo_weights_from_state_dict(sd, path), request, purpose, labels, extra)


def from_onnx(path: Path, request, purpose: str, labels):
    """A torchvision ResNet export onto the zoo; any other classifier through edgekit's ONNX importer."""
    from edgekit.converters import onnx_check
    from edgekit.pipeline.onnx import onnx_call

    model = onnx_call(onnx_check.load, str(path))
    try:
        mapped = zoo_weights_from_onnx(model, path)
    except (ModelFileError, KeyError, IndexError) as exc:
        if request.family in BLOCKS.values():
            raise ModelFileError(f"--weights {path} is not a torchvision {request.family} export ({exc})") from None
        return _generic_onnx(path, model, request, purpose, labels)
    return _source(path, "torchvision_onnx", mapped, request, purpose, labels)


def _generic_onnx(path: Path, model, request, purpose: str, labels):
    """Any ONNX classifier as edgekit convert imports it (not a zoo model: fine-tune with its own layers)."""
    from edgekit.converters import onnx_check, onnx_keras
    from edgekit.pipeline.onnx import image_layout, onnx_call
    from edgekit.pipeline.source import SourceModel
    from edgekit.pipeline.weights.common import check_request, labels_for, provenance

    inputs = onnx_check.graph_inputs(model)
    if len(inputs) != 1:
        raise ModelFileError(f"--weights {path} has {len(inputs)} inputs; an image classifier has exactly one")
    _layout, (h, w, c) = image_layout(onnx_check.static_shape(inputs[0]), onnx_keras.input_layout(model), str(path))
    if h != w or c != 3:
        raise ModelFileError(f"--weights {path}: expected a square RGB input; the model takes {h}x{w}x{c}")
    # BatchNorm stays a layer for a backbone (fine-tuning updates it); folded for a plain classifier
    keras_model, _report = onnx_call(
        onnx_keras.convert, model, name=path.stem.replace("-", "_"), fold_batchnorm=purpose == "classifier"
    )
    classes = int(keras_model.output_shape[-1])
    cfg = ModelConfig(request.family or "onnx", classes=classes, resolution=h)
    check_request(cfg.with_(family=request.family or cfg.family), request, str(path), purpose)
    rec = provenance("onnx", path, importer="edgekit.converters.onnx_keras", normalisation="ImageNet mean/std (assumed)")
    prep = torchvision_preprocessing(h)
    return SourceModel(keras_model, cfg, labels_for(classes, tuple(labels)), prep, str(path), {"weights": rec})
