"""A `.tflite` MobileNet v1 classifier (float or quantized) rebuilt as the zoo Keras model.

TF published all 16 MobileNet v1 α×ρ ImageNet models as `.tflite` files (uint8 QAT and float).
Their graph is the zoo's layer for layer: conv 3x3/2, 13 × (depthwise 3x3, pointwise 1x1), average
pool, 1x1 classifier (+ reshape, softmax). The conversion folded each BatchNorm into its convolution,
so the kernel is the folded kernel and BN becomes the identity plus the folded bias (γ=1, β=bias,
mean 0, variance 1 − ε): the zoo structure is kept, so the same model can be fine-tuned.

Weights are dequantized per tensor or per channel ((q − zero_point) · scale along the quantized
axis). α, resolution and class count come from the tensors; the input normalisation from the model's
metadata, else its input quantization (TF's uint8 models: (q − 128)/128, i.e. [-1, 1]). The rebuilt
model is then run beside the `.tflite` on the given images and their top-1 agreement is reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.config import ModelConfig, Preprocessing
from edgekit.errors import ModelFileError, VerificationError

# Below this top-1 agreement with the .tflite on real images the rebuilt model is refused: a wrong
# layout or activation gives near-chance agreement, while dequantization error alone costs a few %.
MIN_AGREEMENT = 0.6
CHECK_IMAGES = 64


def read_tflite(path: Path):
    """The interpreter (reference kernels, so every op stays visible) of a checked `.tflite`."""
    from edgekit.converters.tflite_file import NotTFLiteError, check_file
    from edgekit.device_scripts import edgelib

    try:
        data = check_file(path)
    except NotTFLiteError as exc:
        raise ModelFileError(f"--weights {path}: {exc}", hint="pass a complete .tflite file") from None
    try:
        return edgelib.Model(data, xnnpack=False), data
    except Exception as exc:
        raise ModelFileError(
            f"--weights {path} cannot be loaded by the TFLite interpreter ({str(exc).splitlines()[0]})"
        ) from None


def _dequantize(it, t: dict) -> np.ndarray:
    try:
        q = it.get_tensor(t["index"])
    except ValueError:
        raise ModelFileError(f"tensor {t['name']!r} holds no constant data") from None
    if q.dtype in (np.float32, np.float16):
        return q.astype(np.float32)
    qp = t["quantization_parameters"]
    scales, zps = np.asarray(qp["scales"], np.float32), np.asarray(qp["zero_points"], np.float32)
    if scales.size == 0:
        raise ModelFileError(f"tensor {t['name']!r} is {q.dtype.name} without quantization parameters")
    if scales.size > 1:  # per channel along quantized_dimension
        shape = [1] * q.ndim
        shape[qp["quantized_dimension"]] = -1
        scales, zps = scales.reshape(shape), zps.reshape(shape)
    return (q.astype(np.float32) - zps) * scales


class _Graph:
    """The convolution-like ops of the model in execution order, with constant inputs resolved."""

    def __init__(self, model) -> None:
        it = model.interpreter
        self.it = it
        self.tensors = {t["index"]: t for t in it.get_tensor_details()}
        ops = it._get_ops_details()
        # Float16 / dynamic models feed weights through DEQUANTIZE ops: see through them.
        self.source = {op["outputs"][0]: op["inputs"][0] for op in ops if op["op_name"] == "DEQUANTIZE"}
        self.ops = [op for op in ops if op["op_name"] != "DEQUANTIZE"]

    def const(self, index: int) -> np.ndarray:
        return _dequantize(self.it, self.tensors[self.source.get(index, index)])

    def shape(self, index: int) -> tuple[int, ...]:
        return tuple(int(d) for d in self.tensors[index]["shape"])


def _quant_kind(t: dict) -> str:
    n = len(t["quantization_parameters"]["scales"])
    return "none" if n == 0 else "per-tensor" if n == 1 else "per-channel"


def _alpha_from(widths: list[int]) -> float:
    """α from the last pointwise width (1024·α), checked against every layer's width."""
    from edgekit.models.mobilenet_v1 import BLOCKS, _width

    alpha = widths[-1] / 1024
    for cand in (0.25, 0.5, 0.75, 1.0, 1.25, round(alpha, 4)):
        expect = [_width(32, cand)] + [w for f, _ in BLOCKS for w in (None, _width(f, cand))]
        if all(e is None or e == w for e, w in zip(expect, widths, strict=False)):
            return cand
    return -1.0


def rebuild(path: Path):
    """(keras model, ModelConfig, preprocessing dict, labels or None, info) from a MobileNet `.tflite`."""
    from edgekit.device_scripts import edgelib
    from edgekit.models import build_model
    from edgekit.models.mobilenet_v1 import BLOCKS

    tfl, data = read_tflite(path)
    g = _Graph(tfl)
    convs = [op for op in g.ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    kinds = "".join({"CONV_2D": "c", "DEPTHWISE_CONV_2D": "d", "FULLY_CONNECTED": "f"}[o["op_name"]] for o in convs)
    expected = "c" + "dc" * len(BLOCKS)
    if len(convs) != len(expected) + 1 or not kinds.startswith(expected) or kinds[-1] not in "cf":
        raise ModelFileError(
            f"--weights {path} is not a MobileNet v1 classifier: expected conv + 13 depthwise/pointwise "
            f"pairs + a classifier ({len(expected) + 1} convolutions); found {len(convs)} "
            f"({', '.join(sorted({o['op_name'] for o in g.ops}))})"
        )
    _, h, w, c = tfl.input_shape
    if h != w or c != 3:
        raise ModelFileError(f"--weights {path}: expected a square RGB input; the model takes {tfl.input_shape}")
    kernels = [g.const(op["inputs"][1]) for op in convs]
    biases = [g.const(op["inputs"][2]) if len(op["inputs"]) > 2 and op["inputs"][2] >= 0 else None for op in convs]
    widths = [k.shape[-1] if op["op_name"] == "DEPTHWISE_CONV_2D" else k.shape[0] for op, k in zip(convs, kernels, strict=True)]
    alpha = _alpha_from(widths[:-1])
    if alpha <= 0:
        raise ModelFileError(f"--weights {path}: the layer widths {widths[:-1][:4]}… fit no MobileNet v1 α")
    # Strides from the spatial sizes: 2 where the feature map halves, as in the zoo's block table.
    sizes = [g.shape(op["outputs"][0])[1] for op in convs[:-1]]
    strides = [round(a / b) for a, b in zip([h, *sizes[:-1]], sizes, strict=True)]
    want = [2] + [s for _, st in BLOCKS for s in (st, 1)]
    if strides != want:
        raise ModelFileError(f"--weights {path}: the strides {strides} are not MobileNet v1's {want}")
    classes = widths[-1]
    cfg = ModelConfig("mobilenet_v1", classes=classes, resolution=h, alpha=alpha)
    model = build_model(cfg, seed=None)
    _assign(model, convs, kernels, biases, path)
    prep = edgelib.default_preprocessing(tfl)
    prep.pop("source", None)
    prep = Preprocessing.from_dict(prep)
    w0 = g.tensors[g.source.get(convs[1]["inputs"][1], convs[1]["inputs"][1])]
    info = {
        "input_dtype": np.dtype(tfl.input["dtype"]).name,
        "input_quantization": [float(tfl.input["quantization"][0]), int(tfl.input["quantization"][1])],
        "weights_dtype": np.dtype(w0["dtype"]).name,
        "weights_quantization": _quant_kind(w0),
        "normalisation_from": "metadata" if tfl.meta and "preprocessing" in tfl.meta else (
            "input quantization" if tfl.input["dtype"] != np.float32 else "assumed [-1, 1] (float input)"
        ),
    }
    return model, cfg, prep, tfl.labels, info, tfl


def _assign(model, convs, kernels, biases, path: Path) -> None:
    from edgekit.models.mobilenet_v1 import BLOCKS

    names = ["conv1"] + [n for i in range(1, len(BLOCKS) + 1) for n in (f"conv_dw_{i}", f"conv_pw_{i}")]
    for name, op, k, b in zip(names, convs, kernels, biases, strict=False):
        layer = model.get_layer(name)
        if op["op_name"] == "DEPTHWISE_CONV_2D":  # (1, kh, kw, C·m) -> (kh, kw, C, m)
            k = k[0][..., None]
        else:  # (out, kh, kw, in) -> (kh, kw, in, out)
            k = k.transpose(1, 2, 3, 0)
        _set(layer, [k], path)
        bn = model.get_layer(f"{name}_bn")
        bias = b if b is not None else np.zeros(k.shape[-2] if op["op_name"] == "DEPTHWISE_CONV_2D" else k.shape[-1], np.float32)
        n = bias.shape[0]
        # BN as identity + folded bias: gamma 1, beta bias, mean 0, var 1 - eps (so sqrt(var + eps) = 1)
        _set(bn, [np.ones(n, np.float32), bias, np.zeros(n, np.float32), np.full(n, 1.0 - bn.epsilon, np.float32)], path)
    k, b = kernels[-1], biases[-1]
    k = k.reshape(k.shape[0], -1).T  # (classes, 1, 1, C) or (classes, C) -> (C, classes)
    _set(model.get_layer("logits"), [k, b if b is not None else np.zeros(k.shape[1], np.float32)], path)


def _set(layer, weights, path: Path) -> None:
    want = [tuple(w.shape) for w in layer.get_weights()]
    got = [tuple(w.shape) for w in weights]
    if want != got:
        raise ModelFileError(f"--weights {path}: layer {layer.name} expects shapes {want}; the file has {got}")
    layer.set_weights(weights)


def agreement(model, tfl, x: np.ndarray) -> dict:
    """Top-1 agreement of the rebuilt Keras model with the `.tflite` on the same normalised images."""
    ref = tfl.predict(x)
    out = np.asarray(model.predict(x, batch_size=32, verbose=0))
    return {
        "images": int(len(x)),
        "top1_agreement": round(float(np.mean(ref.argmax(-1) == out.argmax(-1))), 4),
    }


def check(model, tfl, x: np.ndarray, source: str, synthetic: bool, path: Path) -> dict:
    rec = {**agreement(model, tfl, x), "data": source, "synthetic": synthetic}
    if not synthetic and rec["top1_agreement"] < MIN_AGREEMENT:
        raise VerificationError(
            f"the model rebuilt from {path} agrees with the .tflite on only {rec['top1_agreement']:.0%} of "
            f"{rec['images']} images (need {MIN_AGREEMENT:.0%})",
            hint="the file is not laid out like TF's MobileNet v1; convert from its Keras source instead",
        )
    return rec


def source(path: Path, request, purpose: str, check_data: str | None, labels: tuple[str, ...], progress):
    """The SourceModel of a MobileNet v1 `.tflite`, checked against the file on `check_data` images."""
    from edgekit.data.datasets import load_calibration
    from edgekit.pipeline.source import SourceModel
    from edgekit.pipeline.weights.common import check_request, labels_for, provenance

    progress(f"rebuilding {path.name} as a Keras model")
    model, cfg, prep, own_labels, info, tfl = rebuild(path)
    check_request(cfg, request, str(path), purpose)
    progress(f"checking the rebuilt model against {path.name}")
    batch = load_calibration(check_data, prep.to_dict(), CHECK_IMAGES)
    rec = check(model, tfl, batch.x, batch.source, batch.synthetic, path)
    given = tuple(labels) or (tuple(own_labels) if own_labels and len(own_labels) == cfg.classes else ())
    extra = {"weights": provenance("tflite", path, **info, check=rec)}
    return SourceModel(model, cfg, labels_for(cfg.classes, given), prep, str(path), extra)
