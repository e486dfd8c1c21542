"""Sources edgekit wrote itself or Keras saved: a run folder, a bundle folder, `.keras`, `.h5`.

A run folder brings everything: the model, its labels, its preprocessing, a sample of its training
images for calibration and held-out validation images (so export can measure float vs int8). A
bundle brings its float model, labels and preprocessing from its manifest. A bare `.keras` or whole
-model `.h5` brings the model; labels come from --labels or a labels.txt beside it, preprocessing is
[-1, 1] at the model's input size. A weights-only `.h5` is a Keras MobileNet v1 weight file
(keras_h5.py): its α comes from the tensors, its resolution from the file name or --resolution.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgekit.bundle.keras_model import load_keras
from edgekit.bundle.manifest import LABELS, MANIFEST, default_labels, read_labels
from edgekit.config import ModelConfig, Preprocessing, WeightsRequest
from edgekit.data.datasets import ImageBatch, normalise
from edgekit.errors import ModelFileError, UsageError
from edgekit.pipeline.source import SourceModel
from edgekit.pipeline.weights import keras_h5
from edgekit.pipeline.weights.common import check_request, labels_for, provenance

_ROWS_IN_NAME = re.compile(r"mobilenet_\d_\d_(\d+)_tf")


def from_folder(p: Path, request: WeightsRequest, labels: tuple[str, ...]) -> SourceModel:
    from edgekit.bundle.runfolder import RUN_JSON

    if (p / RUN_JSON).is_file():
        return from_run(p, labels)
    if (p / MANIFEST).is_file():
        return from_bundle(p, labels)
    raise ModelFileError(
        f"{p} is neither a training run folder (no run.json) nor a bundle (no {MANIFEST})",
        hint="pass runs/NAME, an exported bundle, or a model file",
    )


def from_run(run: Path, labels: tuple[str, ...] = ()) -> SourceModel:
    from edgekit.bundle.runfolder import MODEL_FILE, load_samples, read_run

    info = read_run(run)
    own = tuple(read_labels(run / LABELS))
    if labels and len(labels) != len(own):
        raise UsageError(f"--labels has {len(labels)} entries; the run {run} has {len(own)} classes")
    labels = tuple(labels) or own
    prep = Preprocessing.from_dict(info["preprocessing"])
    model = load_keras(run / MODEL_FILE)
    samples = load_samples(run) or {}
    p = prep.to_dict()
    calib = evald = None
    if "calib_x" in samples and len(samples["calib_x"]):
        calib = ImageBatch(normalise(samples["calib_x"], p), (), (), f"run:{run} (training sample)")
    if "val_x" in samples and len(samples["val_x"]):
        evald = ImageBatch(
            normalise(samples["val_x"], p),
            (),
            (),
            f"run:{run} (held-out validation images)",
            y=samples["val_y"].astype(np.int64),
            class_names=labels,
        )
    extra = {
        "run": str(run),
        "data": info.get("data", {}).get("source"),
        "trained_on": info.get("device"),
        "run_evaluation": {k: info.get("evaluation", {}).get(k) for k in ("top1", "top5", "n")},
        "weights": provenance("run", run / MODEL_FILE),
    }
    if info.get("weights"):  # a run fine-tuned from pretrained weights says which
        extra["pretrained"] = info["weights"]
    return SourceModel(
        model, ModelConfig.from_dict(info["model"]), labels, prep, str(run), extra, calibration=calib, eval_data=evald
    )


def from_bundle(bundle: Path, labels: tuple[str, ...] = ()) -> SourceModel:
    from edgekit.bundle.manifest import read_manifest
    from edgekit.bundle.writer import FLOAT_MODEL

    m = read_manifest(bundle)
    float_model = bundle / m.get("float_model", FLOAT_MODEL)
    if not float_model.is_file():
        raise ModelFileError(
            f"bundle {bundle} has no float Keras model ({float_model.name})",
            hint="re-export it with this edgekit (bundles keep float_model.keras)",
        )
    model = load_keras(float_model)
    own = tuple(read_labels(bundle / m.get("labels_file", LABELS)))
    if labels and len(labels) != len(own):
        raise UsageError(f"--labels has {len(labels)} entries; the bundle {bundle} has {len(own)} classes")
    cfg_d = {k: m["model"][k] for k in ("family", "classes", "resolution", "alpha", "shortcut") if k in m["model"]}
    mcfg = ModelConfig.from_dict(cfg_d) if "family" in cfg_d else _config_of(model, float_model, None)
    extra = {"bundle": str(bundle), "weights": provenance("bundle", float_model, name=m.get("name"))}
    if m.get("source", {}).get("weights") not in (None, "random"):
        extra["pretrained"] = m["source"].get("pretrained") or m["source"].get("weights")
    return SourceModel(
        model, mcfg, tuple(labels) or own, Preprocessing.from_dict(m["preprocessing"]), str(bundle), extra
    )


def _config_of(model, path: Path, request: WeightsRequest | None) -> ModelConfig:
    from edgekit.models.registry import get_family, parse_variant_name

    shape = model.input_shape
    if not (isinstance(shape, tuple) and len(shape) == 4 and shape[1] and shape[1] == shape[2]):
        raise ModelFileError(f"{path}: expected a square NHWC image input; the model takes {shape}")
    res, classes = int(shape[1]), int(model.output_shape[-1])
    # The architecture: from the model's own name when it is a zoo variant, else the --model flag.
    mcfg = parse_variant_name(model.name)
    if mcfg is None:
        try:
            fam = get_family(model.name)
            mcfg = ModelConfig(fam.name, shortcut="B" if fam.uses_shortcut else None)
        except UsageError:
            mcfg = ModelConfig((request and request.family) or model.name)
    return mcfg.with_(resolution=res, classes=classes)


def from_keras(path: Path, request: WeightsRequest, labels: tuple[str, ...]) -> SourceModel:
    from edgekit.bundle.runfolder import MODEL_FILE, RUN_JSON

    if path.name == MODEL_FILE and (path.parent / RUN_JSON).is_file():
        return from_run(path.parent, labels)
    model = load_keras(path)
    mcfg = _config_of(model, path, request)
    classes = mcfg.classes
    side = path.parent / LABELS
    labels = tuple(labels) or (tuple(read_labels(side)) if side.is_file() else ())
    if labels and len(labels) != classes:
        raise UsageError(f"{len(labels)} labels for a model with {classes} outputs ({path})")
    prep = Preprocessing(size=(mcfg.resolution, mcfg.resolution))
    extra = {"keras_model_name": model.name, "weights": provenance("keras", path)}
    return SourceModel(model, mcfg, labels or default_labels(classes), prep, str(path), extra)


def from_h5(path: Path, request: WeightsRequest, purpose: str, labels: tuple[str, ...]) -> SourceModel:
    if keras_h5.is_keras_model_h5(path):
        return from_keras(path, request, labels)
    if request.family not in (None, "mobilenet_v1"):
        raise ModelFileError(
            f"--weights {path} is a Keras weight file, which edgekit reads for MobileNet v1 only; "
            f"--model asked for {request.family}",
            hint="for ResNet pass torchvision's .pth or its ONNX export",
        )
    m = _ROWS_IN_NAME.search(path.name)
    rows = int(m.group(1)) if m else None
    resolution = request.resolution or rows or 224
    classes = None if purpose == "classifier" else request.classes
    model, cfg, with_head = keras_h5.load_mobilenet(path, resolution, classes=classes, alpha=request.alpha)
    if purpose == "classifier":
        check_request(cfg, request, str(path), purpose)
    extra = {"weights": provenance("keras_h5", path, head="pretrained" if with_head else "new (no_top file)")}
    if rows and rows != resolution:
        extra["weights"]["note"] = f"published for {rows} px, used at {resolution} px"
    prep = Preprocessing(size=(resolution, resolution))  # Keras MobileNet: x / 127.5 - 1
    return SourceModel(model, cfg, labels_for(cfg.classes, labels), prep, str(path), extra)
