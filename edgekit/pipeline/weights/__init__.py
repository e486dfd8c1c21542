"""Weight sources: one owner that turns a `--weights` spec into a SourceModel.

API (export, train and sweep call these; all import TensorFlow):

    resolve(spec: str, request: WeightsRequest | None = None, *, purpose: str = "classifier",
            check_data: str | None = None, labels: tuple[str, ...] = (),
            progress: Callable[[str], None] = ...) -> SourceModel
        `purpose="classifier"`: the model as the source has it (classes checked against the request);
        `purpose="backbone"`: for transfer learning: the class count may differ (the head will be
        replaced) and `imagenet` MobileNet uses the smaller `_no_top` file (its head is then fresh).
        `check_data`: images (a --data/--calibration spec) a `.tflite` source is checked on.

    backbone(spec, request, *, check_data=None, progress=...) -> SourceModel
        resolve(..., purpose="backbone"). The model keeps the zoo layer names where the source is a
        zoo architecture (features at layer "global_pool", head "logits"); feature_tensor(model) gives
        the classifier's input tensor for any source. SourceModel.preprocessing is the normalisation the
        weights expect ([-1, 1] for Keras/TF MobileNets, ImageNet mean/std for torchvision ResNets);
        SourceModel.extra["weights"] is the provenance to record (kind, file, url, sha256, checks).

    load_weights(cfg: ExportConfig) -> SourceModel     export's entry (cfg.weights, cfg.weights_request)

Specs: `imagenet` (published weights, downloaded once: see imagenet.py), a run folder, a bundle folder,
`.keras`, `.h5` (a whole Keras model, or a legacy Keras MobileNet weight file), `.tflite` (a MobileNet v1
classifier, float or quantized), `.pth`/`.pt` (a torchvision ResNet-18/34 state dict), `.onnx` (a
torchvision ResNet export mapped onto the zoo, else any classifier through edgekit's ONNX importer).
Every failure is one line (ModelFileError/UsageError) raised before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgekit.config import ExportConfig, WeightsRequest
from edgekit.errors import ModelFileError, UsageError, require_tensorflow

Progress = Callable[[str], None]
PURPOSES = ("classifier", "backbone")

__all__ = ["WeightsRequest", "backbone", "feature_tensor", "load_weights", "resolve"]


def resolve(
    spec: str,
    request: WeightsRequest | None = None,
    *,
    purpose: str = "classifier",
    check_data: str | None = None,
    labels: tuple[str, ...] = (),
    progress: Progress = lambda _m: None,
):
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}; received {purpose!r}")
    request = request or WeightsRequest()
    require_tensorflow()
    from edgekit.pipeline.weights import files, published, tflite, torchvision

    if str(spec).lower() == "imagenet":
        return published.imagenet_source(request, purpose, progress)
    p = Path(spec)
    if not p.exists():
        raise ModelFileError(
            f"--weights {p} does not exist",
            hint="pass imagenet, a run or bundle folder, or a .keras/.h5/.tflite/.pth/.onnx file",
        )
    if p.is_dir():
        return files.from_folder(p, request, labels)
    suffix = p.suffix.lower()
    if suffix == ".keras":
        return files.from_keras(p, request, labels)
    if suffix == ".h5":
        return files.from_h5(p, request, purpose, labels)
    if suffix == ".tflite":
        return tflite.source(p, request, purpose, check_data, labels, progress)
    if suffix in (".pth", ".pt"):
        return torchvision.from_state_dict(p, request, purpose, labels)
    if suffix == ".onnx":
        return torchvision.from_onnx(p, request, purpose, labels)
    raise ModelFileError(
        f"--weights {p}: unknown kind {suffix or 'no suffix'!r}",
        hint="pass imagenet, a run or bundle folder, or a .keras/.h5/.tflite/.pth/.onnx file",
    )


def backbone(spec: str, request: WeightsRequest | None = None, *, check_data=None, progress=lambda _m: None):
    """A pretrained model for transfer learning: see the module docstring."""
    return resolve(spec, request, purpose="backbone", check_data=check_data, progress=progress)


def feature_tensor(model):
    """The tensor the classifier head consumes: the zoo's `global_pool`, else the last Dense/1x1 conv's input."""
    from keras import layers

    names = {layer.name for layer in model.layers}
    if "global_pool" in names:
        return model.get_layer("global_pool").output
    for layer in reversed(model.layers):
        if isinstance(layer, (layers.Dense, layers.Conv2D)):
            return layer.input
    raise ModelFileError(f"model {model.name} has no Dense or convolution layer to take features from")


def load_weights(cfg: ExportConfig):
    """The SourceModel for `edgekit export --weights` (labels and calibration images from cfg)."""
    import dataclasses

    import numpy as np

    request = cfg.weights_request or WeightsRequest()
    if cfg.labels and request.classes is None:
        request = request.with_(classes=len(cfg.labels))
    src = resolve(cfg.weights, request, check_data=cfg.calibration, labels=tuple(cfg.labels))
    if cfg.labels and len(cfg.labels) != len(src.labels):
        raise UsageError(
            f"--labels has {len(cfg.labels)} entries; --weights {cfg.weights} has {len(src.labels)} classes"
        )
    if cfg.preprocessing is not None:
        src = dataclasses.replace(src, preprocessing=cfg.preprocessing)
    calib = src.calibration
    if calib is not None and len(calib.x) > cfg.calibration_samples:  # a run's training sample
        idx = np.sort(np.random.default_rng(0).choice(len(calib.x), cfg.calibration_samples, replace=False))
        src = dataclasses.replace(src, calibration=dataclasses.replace(calib, x=calib.x[idx]))
    return src
