"""Keras' published MobileNet v1 weight files (legacy Keras-2 `.h5`) loaded into the zoo MobileNet.

Layout of those files (what `save_weights` wrote in Keras 2): the root's `layer_names` attribute lists
every layer; each layer has a group with a `weight_names` attribute (`conv1/kernel:0`, ...) naming its
datasets. MobileNet's layers are `conv1`, `conv1_bn`, `conv_dw_N`, `conv_dw_N_bn`, `conv_pw_N`,
`conv_pw_N_bn` (N = 1..13) and, in the files with a top, the 1×1 convolution `conv_preds` (kernel
1×1×C×classes + bias), which the zoo's Dense `logits` takes reshaped to C×classes. Weights are matched
by layer name, so the file's extra layers (padding, activations) and their order do not matter.

The zoo pads stride-2 depthwise convolutions 'same', Keras pads (0, 1) + 'valid': identical whenever the
feature map is even-sized there, which holds for 224·ρ at every published resolution (128–224).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.config import ModelConfig
from edgekit.errors import ModelFileError

BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")


def read_layers(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{layer name: {weight name without the layer prefix and ':0': array}} of a legacy Keras `.h5`."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ModelFileError(
            f"--weights {path} is not a readable HDF5 file ({str(exc).splitlines()[0]})",
            hint="a truncated download? delete it and fetch it again",
        ) from None
    out: dict[str, dict[str, np.ndarray]] = {}
    try:
        with f:
            g = f["model_weights"] if "model_weights" in f else f  # a whole-model .h5 keeps them there
            if "layer_names" not in g.attrs:
                raise ModelFileError(
                    f"--weights {path} is an HDF5 file but not Keras weights (no layer_names attribute)"
                )
            for raw in g.attrs["layer_names"]:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                grp = g[name]
                weights = {}
                for wraw in grp.attrs.get("weight_names", []):
                    wname = wraw.decode() if isinstance(wraw, bytes) else str(wraw)
                    short = wname.split("/")[-1].split(":")[0]
                    weights[short] = np.asarray(grp[wname], np.float32)
                if weights:
                    out[name] = weights
    except (KeyError, OSError, ValueError) as exc:
        raise ModelFileError(
            f"--weights {path} is damaged or incomplete ({exc.__class__.__name__}: {str(exc).splitlines()[0]})",
            hint="a truncated download? delete it and fetch it again",
        ) from None
    return out


def is_keras_model_h5(path: Path) -> bool:
    """A whole saved model (architecture + weights), as opposed to a weights-only file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "model_config" in f.attrs
    except OSError:
        return False


def mobilenet_layout(layers: dict, path: Path) -> tuple[float, int | None]:
    """(α, classes or None for a no_top file) checked from the tensors of a MobileNet v1 weight file."""
    from edgekit.models.mobilenet_v1 import BLOCKS, _width

    needed = ["conv1", "conv1_bn"] + [
        n for i in range(1, len(BLOCKS) + 1) for n in (f"conv_dw_{i}", f"conv_dw_{i}_bn", f"conv_pw_{i}", f"conv_pw_{i}_bn")
    ]
    missing = [n for n in needed if n not in layers]
    if missing:
        found = ", ".join(list(layers)[:4]) or "none"
        raise ModelFileError(
            f"--weights {path} is not a Keras MobileNet v1 weight file: layers {', '.join(missing[:3])}"
            f"{'…' if len(missing) > 3 else ''} missing ({len(missing)} of {len(needed)}; found {found}…)"
        )
    last = layers[f"conv_pw_{len(BLOCKS)}"].get("kernel")
    if last is None:
        raise ModelFileError(f"--weights {path}: conv_pw_{len(BLOCKS)} has no kernel")
    alpha = last.shape[-1] / 1024
    for i, (filters, _) in enumerate(BLOCKS, start=1):
        got = layers[f"conv_pw_{i}"]["kernel"].shape[-1]
        if got != _width(filters, alpha):
            raise ModelFileError(
                f"--weights {path}: conv_pw_{i} has {got} filters; MobileNet v1 α {alpha:g} has "
                f"{_width(filters, alpha)}"
            )
    head = layers.get("conv_preds")
    classes = int(head["kernel"].shape[-1]) if head and "kernel" in head else None
    return alpha, classes


def assign_mobilenet(model, layers: dict, path: Path, with_head: bool) -> None:
    """Copy the file's weights into the zoo model by layer name."""
    for layer in model.layers:
        src = layers.get(layer.name)
        if layer.name == "logits":
            if not with_head:
                continue
            src = layers["conv_preds"]
            k = src["kernel"]
            arrays = [k.reshape(-1, k.shape[-1]), src["bias"]]
        elif src is None:
            if layer.weights:
                raise ModelFileError(f"--weights {path} has no weights for layer {layer.name}")
            continue
        elif "depthwise_kernel" in src:
            arrays = [src["depthwise_kernel"]]
        elif "gamma" in src:
            arrays = [src[k] for k in BN_WEIGHTS]
        else:
            arrays = [src["kernel"], *([src["bias"]] if "bias" in src else [])]
        want = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(a.shape) for a in arrays]
        if want != got:
            raise ModelFileError(f"--weights {path}: layer {layer.name} expects shapes {want}; the file has {got}")
        layer.set_weights(arrays)


def load_mobilenet(path: Path, resolution: int, classes: int | None = None, alpha: float | None = None):
    """The zoo MobileNet at `resolution` with the file's weights; (model, ModelConfig, with_head).

    A no_top file leaves the zoo's classifier freshly initialised for `classes` outputs (a transfer
    learning head); with a top, `classes` must match the file's (or be None)."""
    from edgekit.models import build_model

    layers = read_layers(path)
    file_alpha, file_classes = mobilenet_layout(layers, path)
    if alpha is not None and abs(alpha - file_alpha) > 1e-6:
        raise ModelFileError(f"--weights {path} holds MobileNet v1 α {file_alpha:g}; --alpha asked for {alpha:g}")
    with_head = file_classes is not None and (classes is None or classes == file_classes)
    if file_classes is None and classes is None:
        raise ModelFileError(
            f"--weights {path} has no classifier (a no_top file)", hint="give --classes, or use the file with a top"
        )
    cfg = ModelConfig("mobilenet_v1", classes=file_classes if with_head else classes, resolution=resolution, alpha=file_alpha)
    model = build_model(cfg, seed=0)
    assign_mobilenet(model, layers, path, with_head)
    return model, cfg, with_head
