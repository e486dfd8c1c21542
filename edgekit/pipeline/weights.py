"""`edgekit export --weights`: a training run folder or a saved `.keras` model as the export source.

A run folder brings everything: the model, its labels, its preprocessing, a sample of its training
images for calibration (used unless --calibration is given) and held-out validation images, so the
export can measure float vs int8 accuracy. A bare `.keras` brings the model; labels come from --labels
or a labels.txt beside it, preprocessing is the default [-1, 1] scaling at the model's input size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.bundle.keras_model import load_keras
from edgekit.bundle.manifest import LABELS, default_labels, read_labels
from edgekit.config import ExportConfig, ModelConfig, Preprocessing
from edgekit.data.datasets import ImageBatch, normalise
from edgekit.errors import ModelFileError, UsageError
from edgekit.pipeline.source import SourceModel


def load_weights(cfg: ExportConfig):
    """The SourceModel for `cfg.weights` (imports TensorFlow)."""

    p = Path(cfg.weights)
    if p.is_dir():
        if (p / "run.json").is_file():
            return _from_run(p, cfg)
        raise ModelFileError(
            f"{p} is not a training run folder (no run.json)", hint="pass runs/NAME or a .keras file"
        )
    if p.is_file() and p.suffix == ".keras":
        if p.name == "model.keras" and (p.parent / "run.json").is_file():
            return _from_run(p.parent, cfg)
        return _from_keras_file(p, cfg)
    if not p.exists():
        raise ModelFileError(f"--weights {p} does not exist", hint="pass a run folder or a .keras file")
    raise ModelFileError(
        f"--weights {p}: expected a run folder or a .keras file; received {p.suffix or 'a file'!r}"
    )


def _from_run(run: Path, cfg: ExportConfig):
    from edgekit.bundle.runfolder import MODEL_FILE, load_samples, read_run  # noqa: PLC0415

    info = read_run(run)
    labels = tuple(read_labels(run / LABELS))
    if cfg.labels and len(cfg.labels) != len(labels):
        raise UsageError(f"--labels has {len(cfg.labels)} entries; the run {run} has {len(labels)} classes")
    labels = tuple(cfg.labels) or labels
    prep = Preprocessing.from_dict(info["preprocessing"])
    model = load_keras(run / MODEL_FILE)
    samples = load_samples(run) or {}
    p = prep.to_dict()
    calib = evald = None
    if "calib_x" in samples and len(samples["calib_x"]):
        x = samples["calib_x"]
        if len(x) > cfg.calibration_samples:
            x = x[np.sort(np.random.default_rng(0).choice(len(x), cfg.calibration_samples, replace=False))]
        calib = ImageBatch(normalise(x, p), (), (), f"run:{run} (training sample)")
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
    }
    return SourceModel(
        model,
        ModelConfig.from_dict(info["model"]),
        labels,
        prep,
        str(run),
        extra,
        calibration=calib,
        eval_data=evald,
    )


def _from_keras_file(path: Path, cfg: ExportConfig):
    from edgekit.models.registry import get_family, parse_variant_name  # noqa: PLC0415

    model = load_keras(path)
    shape = model.input_shape
    if not (isinstance(shape, tuple) and len(shape) == 4 and shape[1] and shape[1] == shape[2]):
        raise ModelFileError(f"{path}: expected a square NHWC image input; the model takes {shape}")
    res, classes = int(shape[1]), int(model.output_shape[-1])
    # The architecture: from the model's own name when it is a zoo variant, else the --model flags.
    mcfg = parse_variant_name(model.name)
    if mcfg is None:
        try:
            fam = get_family(model.name)
            mcfg = ModelConfig(fam.name, shortcut="B" if fam.uses_shortcut else None)
        except UsageError:
            mcfg = cfg.model
    mcfg = mcfg.with_(resolution=res, classes=classes)
    side = path.parent / LABELS
    labels = tuple(cfg.labels) or (tuple(read_labels(side)) if side.is_file() else ())
    if labels and len(labels) != classes:
        raise UsageError(f"{len(labels)} labels for a model with {classes} outputs ({path})")
    labels = labels or default_labels(classes)
    prep = cfg.preprocessing or Preprocessing(size=(res, res))
    return SourceModel(model, mcfg, labels, prep, str(path), {"keras_model_name": model.name})
