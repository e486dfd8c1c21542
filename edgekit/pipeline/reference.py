"""Desktop evaluation: the float reference (Keras) and the `.tflite` on the host, on the same images.

TARGET may be an export bundle, a training run folder, a saved `.keras` model or any `.tflite`
classifier (third-party ones included: input size, dtype and quantization come from its tensors,
labels from --labels or its embedded metadata). For a bundle the figures are also written to
`reference.json` inside it, so a later device result can be compared without TensorFlow.

Comparisons separate causes: Keras float vs host TFLite = what quantization cost.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.bundle.keras_model import load_keras
from edgekit.bundle.manifest import default_labels
from edgekit.bundle.modelcheck import load_model, predict_checked
from edgekit.device_scripts import edgelib
from edgekit.errors import InputDataError, ModelFileError
from edgekit.pipeline.metrics import compare, scores
from edgekit.pipeline.reference_speed import Timing, check_backend, host_tflite_speed, reference_outputs

REFERENCE_JSON = "reference.json"
BACKGROUND = edgelib.BACKGROUND_LABELS
Progress = Callable[[str], None]


# --------------------------------------------------------------------------- metrics (no TensorFlow)


def resolve_labels(
    labels: list[str] | None, n_outputs: int, where: str = "labels"
) -> tuple[list[str], str | None]:
    """Labels matching the model's outputs. A background label the model has no output for is dropped
    only when it is really there (the first entry names a background class); any other difference in
    count would shift every label by one, so it is refused with the counts (the device agrees)."""
    if labels is None:
        return list(default_labels(n_outputs)), "no labels: classes are named class_<index>"
    if len(labels) == n_outputs:
        return list(labels), None
    if len(labels) == n_outputs + 1 and labels[0].strip().lower() in BACKGROUND:
        return list(
            labels[1:]
        ), f"dropped the leading {labels[0]!r} label: the model has no background output"
    hint = "pass the labels file that belongs to this model with --labels"
    if len(labels) + 1 == n_outputs:
        hint = "if output 0 is a background class, add a first line `background`; else " + hint
    raise ModelFileError(f"{where} has {len(labels)} entries but the model has {n_outputs} outputs", hint=hint)


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True, eq=False)
class Target:
    kind: str  # bundle | run | keras | tflite
    path: Path
    labels: list[str] | None
    prep: dict | None
    keras_path: Path | None
    tflite_path: Path | None
    manifest: dict | None = None
    calib_x: np.ndarray | None = None  # uint8 at model size, for an in-memory int8 conversion


def open_target(target: str, labels_file: str | None = None) -> Target:
    from edgekit.bundle.manifest import (
        LABELS,
        MANIFEST,
        bundle_labels,
        bundle_path,
        primary_model,
        read_labels,
        read_manifest,
    )

    p = Path(target)
    given = read_labels(labels_file) if labels_file else None
    if p.is_dir() and (p / MANIFEST).is_file():
        m = read_manifest(p)
        tfl = bundle_path(p, primary_model(m)["file"])
        keras_path = bundle_path(p, m.get("float_model") or "float_model.keras")
        own = bundle_labels(p, m)  # checked even when --labels replaces them: a broken bundle says so
        labels = given or own
        return Target(
            "bundle", p, labels, m["preprocessing"], keras_path if keras_path.is_file() else None, tfl, m
        )
    if p.is_dir() and (p / "run.json").is_file():
        from edgekit.bundle.runfolder import MODEL_FILE, load_samples, read_run

        run = read_run(p)
        samples = load_samples(p) or {}
        labels = given or read_labels(p / LABELS)
        return Target(
            "run", p, labels, run["preprocessing"], p / MODEL_FILE, None, None, samples.get("calib_x")
        )
    if p.is_dir():
        raise ModelFileError(f"{p} is neither an export bundle (manifest.json) nor a training run (run.json)")
    if not p.is_file():
        raise ModelFileError(f"{p} does not exist", hint="pass a bundle, a run folder, a .keras or a .tflite")
    if p.suffix == ".keras":
        side = p.parent / LABELS
        labels = given or (read_labels(side) if side.is_file() else None)
        return Target("keras", p, labels, None, p, None)
    if p.suffix == ".tflite":
        return Target("tflite", p, given, None, None, p)
    raise ModelFileError(f"{p}: unknown model type {p.suffix!r}", hint="use a .keras or .tflite file")


def evaluate(
    target: str,
    data: str,
    *,
    labels_file: str | None = None,
    data_labels: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    write: bool = True,
    progress: Progress = lambda _m: None,
    backend: str = "tensorflow",
    precision: str = "float32",
    timing: Timing | None = None,
) -> tuple[dict, dict | None]:
    """Evaluate TARGET on labelled DATA (and write reference.json for a bundle); returns the result and
    the manifest to record it with. Recording is the caller's, once the result is printed: a database
    failure must never cost the figures (edgekit.results.unrecorded).

    The float reference runs with Keras on `backend` (tensorflow here, jax/torch in a subprocess) and
    is timed as the host .tflite is (batch-1 latency, throughput at `timing.batch`)."""
    from edgekit.data import datasets as D

    check_backend(backend, precision)
    timing = timing or Timing()
    t = open_target(target, labels_file)
    tfl_model, tfl_bytes = _load_tflite(t.tflite_path) if t.tflite_path else (None, None)
    keras_model = None
    # In this process only for the tensorflow backend, or to convert a run's model to int8
    if t.keras_path is not None and (backend == "tensorflow" or tfl_model is None):
        progress("loading the Keras model")
        keras_model = load_keras(t.keras_path)
    n_out = int(tfl_model.output["shape"][-1]) if tfl_model else int(keras_model.output_shape[-1])
    labels = t.labels or (tfl_model.labels if tfl_model else None)
    labels, label_note = resolve_labels(labels, n_out)
    prep = t.prep or _guess_prep(tfl_model, keras_model)

    progress(f"loading {data}")
    ds = D.open_dataset(data, data_labels)
    batch = D.decode(ds, prep, limit=limit, seed=seed)
    y = D.align_labels(batch.class_names, labels)[batch.y]
    result: dict = {
        "schema_version": 2,  # 2: reference and host .tflite carry latency, throughput, device, backend
        "target": str(t.path),
        "kind": t.kind,
        "data": {
            "source": ds.source,
            "n": int(len(y)),
            "classes": len(set(y.tolist())),
            "skipped": list(batch.skipped),
            "limit": limit,
            "seed": seed,
        },
        "labels": {"count": len(labels), "note": label_note},
        "preprocessing": prep,
    }
    outs: dict[str, np.ndarray] = {}
    if t.keras_path is not None:
        progress(f"float reference (Keras/{backend}, {precision}) on {len(y)} images, then its speed")
        outs["reference"], figures = reference_outputs(
            t.keras_path, keras_model, batch.x, backend=backend, precision=precision, timing=timing
        )
        result["reference"] = {**scores(outs["reference"], y, labels), "model": t.keras_path.name, **figures}
    if tfl_model is None and keras_model is not None:
        progress("converting to int8 in memory (per-channel) for the host TFLite figures")
        tfl_model, note, tfl_bytes = _convert_int8(keras_model, t, batch.x, prep)
        result["tflite_note"] = note
    if tfl_model is not None:
        progress(f"host TFLite ({tfl_model.input['dtype'].__name__} input) on {len(y)} images, then its speed")
        name = str(t.tflite_path) if t.tflite_path else "the int8 model converted in memory"
        outs["tflite"] = predict_checked(tfl_model, batch.x, name)
        result["tflite"] = {
            **scores(outs["tflite"], y, labels),
            "model": t.tflite_path.name if t.tflite_path else "int8 (converted in memory)",
            "input_dtype": np.dtype(tfl_model.input["dtype"]).name,
            "runtime": f"{tfl_model.runtime} {tfl_model.runtime_version}",
            **host_tflite_speed(tfl_bytes, tfl_model, batch.x, timing),
        }
    if "reference" in outs and "tflite" in outs:
        result.update(compare(outs["reference"], outs["tflite"], result["reference"], result["tflite"]))
    if t.kind == "bundle" and write:
        from edgekit.bundle.atomic import write_json_atomic
        from edgekit.bundle.manifest import bundle_id

        ref = {**result, "bundle_id": bundle_id(t.manifest)}
        for k, v in outs.items():  # per-image predictions, so a device run can be compared image by image
            ref[k] = {
                **result[k],
                "predictions": [
                    {"path": p, "label": int(lab), "pred": int(pr)}
                    for p, lab, pr in zip(batch.paths, y, v.argmax(-1), strict=True)
                ],
            }
        write_json_atomic(t.path / REFERENCE_JSON, ref)
        result["written"] = str(t.path / REFERENCE_JSON)
    return result, t.manifest


def _load_tflite(path: Path) -> tuple[edgelib.Model, bytes]:
    """Probed in a subprocess first (a model that crashes the interpreter kills only the probe)."""
    return load_model(path, threads=os.cpu_count()), Path(path).read_bytes()


def _guess_prep(tfl_model, keras_model) -> dict:
    if tfl_model is not None:
        try:
            return edgelib.default_preprocessing(tfl_model)
        except edgelib.ModelFailure as exc:
            raise ModelFileError(str(exc)) from None
    _, h, w, _ = keras_model.input_shape
    return {
        "size": [int(h), int(w)],
        "mean": [127.5] * 3,
        "std": [127.5] * 3,
        "color": "RGB",
        "source": "guessed",
    }


def _convert_int8(keras_model, t: Target, x_eval: np.ndarray, prep: dict):
    """A run or a bare .keras has no .tflite yet: make the int8 one export would make."""
    from edgekit.converters import keras_tflite
    from edgekit.data.datasets import normalise

    if t.calib_x is not None and len(t.calib_x):
        calib = normalise(t.calib_x[:100], prep)
        note = f"int8 converted in memory, calibrated on {len(calib)} training images saved with the run"
    else:
        calib = x_eval[:100]
        note = f"int8 converted in memory, calibrated on {len(calib)} of the evaluation images"
    try:
        flat = keras_tflite.convert(
            keras_model, "int8", representative=lambda: (calib[i : i + 1] for i in range(len(calib)))
        )
    except keras_tflite.ConversionError as exc:
        raise ModelFileError(str(exc)) from None
    return load_model(flat, threads=os.cpu_count(), name="the int8 model converted in memory"), note, flat


def recorded_view(result: dict) -> dict:
    """What the results database keeps of an eval: everything but the per-image predictions."""
    return {k: v for k, v in result.items() if k != "predictions"}


def check_data_spec(data: str) -> None:
    from edgekit.data.datasets import is_builtin

    if not is_builtin(data) and not Path(data).exists():
        raise InputDataError(
            f"--data {data} does not exist", hint="pass DIR/<class>/*.jpg, a CSV or builtin:mnist"
        )
