"""Transfer learning: `edgekit train --weights SOURCE --data DIR` in two stages.

  stage 1  the new head only (edgekit.pipeline.backbone): every backbone layer frozen, BatchNorm in
           inference mode, so the pretrained features stay intact while the random head settles;
  stage 2  `--fine-tune top-N%|all`: the top N % of the backbone's weighted layers (or all of them)
           also train, at `--fine-tune-lr` (default a tenth of `--lr`), starting from stage 1's best
           checkpoint. BatchNorm stays in inference mode: a few hundred photos cannot re-estimate
           ImageNet statistics, and letting them drift undoes what stage 1 gained.

Early stopping on validation top-1 in each stage; best.keras holds the best epoch over both stages
(stage 2 replaces stage 1's model only when it is better on validation). Augmentation is the tf.data
pipeline's (edgekit.data), so none of it is baked into the saved model. The normalisation the
weights expect goes into run.json, and from there into the bundle's manifest and .tflite metadata,
so desktop and device preprocess alike. The batch-norm recalibration of training from scratch is
not done: the statistics are the pretrained ones, on purpose.

Resume: checkpoints/state.json says which stage ran and where stage 1 ended; stage 1's best model is
checkpoints/stage1.keras (where stage 2 starts, also after an interruption).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgekit.bundle.atomic import write_json_atomic
from edgekit.bundle.keras_model import load_keras
from edgekit.bundle.manifest import LABELS, SCHEMA_VERSION
from edgekit.bundle.runfolder import MODEL_FILE, RUN_JSON, SAMPLES
from edgekit.config import ModelConfig, Preprocessing
from edgekit.data import datasets as D
from edgekit.data import tfdata
from edgekit.errors import InputDataError, UsageError, require_tensorflow
from edgekit.pipeline import backbone as B
from edgekit.pipeline import fitting
from edgekit.pipeline import train as T
from edgekit.pipeline.backbone import FINE_TUNE_LR_FACTOR
from edgekit.pipeline.metrics import scores
from edgekit.pipeline.train_config import TrainConfig
from edgekit.pipeline.train_data import prepare_data, write_samples

STAGE1_FILE = "stage1.keras"
MIXED_CAST = "logits_float32"  # fitting.training_model's float32 cast under mixed precision
WHAT = {
    1: "head only; backbone frozen, BatchNorm in inference mode",
    2: "head + top {n} backbone layers ({fine}); BatchNorm stays in inference mode",
}


def run_training(cfg, progress=lambda _m: None, resume: bool = False, resume_epochs: int | None = None) -> dict:
    """`edgekit train`: from pretrained weights (here) when `cfg.weights` is set or the run being
    resumed had them, else from scratch (edgekit.pipeline.train.train). Returns run.json."""
    if cfg.weights or (resume and is_transfer_run(cfg.output)):
        from edgekit.pipeline.distributed import tf_config

        if tf_config() is not None:  # its two Keras `fit` stages do not run under MultiWorkerMirroredStrategy
            raise UsageError(
                "fine-tuning pretrained weights (--weights) runs on one worker",
                hint="drop TF_CONFIG / --workers; several GPUs of one machine are used without them",
            )
        return train_transfer(cfg, progress, resume, resume_epochs)
    return T.train(cfg, progress, resume=resume, resume_epochs=resume_epochs)


def is_transfer_run(run) -> bool:
    try:
        state = json.loads((Path(run) / "checkpoints" / "state.json").read_text())
        return bool(state["config"].get("weights"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def train_transfer(cfg, progress, resume: bool = False, resume_epochs: int | None = None) -> dict:
    """The two stages for `cfg.weights`: writes the run folder, returns run.json."""
    out = Path(cfg.output)
    ck = out / "checkpoints"
    state_path = ck / "state.json"
    if resume:
        if not state_path.is_file():
            raise InputDataError(f"{out} has no checkpoint to resume (checkpoints/state.json)", hint="drop --resume")
        state = json.loads(state_path.read_text())
        cfg = TrainConfig.from_dict(state["config"])
        if resume_epochs and state.get("stage1_epochs") is None:
            cfg = replace(cfg, epochs=max(resume_epochs, state["epoch"]))
        mcfg = ModelConfig.from_dict(state["model"])
        prep = Preprocessing.from_dict(state["preprocessing"])
        bb = None
    else:
        if (out / RUN_JSON).exists() or state_path.exists():
            raise UsageError(
                f"run folder {out} already holds a run", hint="pass --resume to continue it, or another -o"
            )
        # the source first: a bad weights file fails before any photo is decoded, and writes nothing
        bb = B.open_source(cfg.weights, cfg.weights_request, cfg.data, progress)
        mcfg, prep = bb.config, bb.preprocessing
        state = {"epoch": 0, "stage": 1, "stage1_epochs": None, "stages": {}, "source": bb.record}
    fine = B.FineTune.parse(cfg.fine_tune)
    splits = prepare_data(cfg, (mcfg.resolution, mcfg.resolution), progress)
    labels = splits.train.class_names
    mcfg = mcfg.with_(classes=len(labels))
    cfg = replace(cfg, model=mcfg)

    tf = require_tensorflow()
    import keras

    from edgekit.models import variant_name

    keras.utils.set_random_seed(cfg.seed)
    strategy, device = fitting.select_device(cfg.mixed_precision)
    ck.mkdir(parents=True, exist_ok=True)
    (out / LABELS).write_text("\n".join(labels) + "\n", encoding="utf-8")
    state.update(model=mcfg.to_dict(), preprocessing=prep.to_dict(), config=cfg.to_dict())

    batch = cfg.batch_size * strategy.num_replicas_in_sync
    p = prep.to_dict()
    data = (
        tfdata.tf_dataset(splits.train, p, batch_size=batch, training=True, seed=cfg.seed, augment=cfg.augment,
                       cached=splits.train_img),
        tfdata.tf_dataset(splits.val, p, batch_size=batch, training=False, cached=splits.val_img),
        max(1, int(np.ceil(len(splits.train) / batch))),
    )  # fmt: skip
    hist_path = out / "history.json"
    history = json.loads(hist_path.read_text()) if resume and hist_path.is_file() else {}
    stages = _Stages(cfg, fine, out, state, history, data, progress, device["mixed_precision"])

    t0 = time.perf_counter()
    with strategy.scope():
        if state["stage1_epochs"] is None:
            if bb is None:
                model = load_keras(ck / "last.keras", compile=True)
                progress(f"resuming stage 1 at epoch {state['epoch'] + 1}/{cfg.epochs}")
            else:
                policy = "mixed_float16" if device["mixed_precision"] else "float32"
                model = B.transfer_model(replace(bb, model=B.as_policy(bb.model, policy)), mcfg.classes,
                                         variant_name(mcfg))  # fmt: skip
            stages.run(1, model, resumed=bb is None)
        if fine.fraction > 0 and cfg.fine_tune_epochs > 0:
            if state["stage"] == 2:
                progress(f"resuming stage 2 at epoch {state['epoch'] - state['stage1_epochs'] + 1}")
                stages.run(2, load_keras(ck / "last.keras", compile=True), resumed=True)
            else:
                if bb is None:
                    progress(f"resuming: stage 1 ended after {state['stage1_epochs']} epochs; stage 2 starts")
                stages.run(2, load_keras(ck / STAGE1_FILE), resumed=False)
    wall_s = time.perf_counter() - t0

    keras.mixed_precision.set_global_policy("float32")  # the saved model is plain float32
    model = B.as_policy(load_keras(ck / "best.keras"), "float32")
    if model.layers[-1].name == MIXED_CAST:
        model = keras.Model(model.input, model.layers[-2].output, name=model.name)
    for layer in model.layers:
        layer.trainable = True  # a plain model file: freezing was the training's business
    model.save(out / MODEL_FILE)
    reloaded = load_keras(out / MODEL_FILE)
    ev = scores(fitting.predict(reloaded, D.normalise(splits.val_img.images, p)), splits.val_img.y, labels)
    write_samples(out / SAMPLES, splits, cfg.seed)
    run = _record(cfg, prep, splits, device, stages, ev)
    run["training"].update(wall_seconds_this_session=round(wall_s, 1), tf_version=tf.__version__,
                           keras_version=keras.__version__)  # fmt: skip
    write_json_atomic(out / RUN_JSON, run)
    return run


class _Stages:
    """One fit per stage, sharing the run's checkpoints, history.json and state.json."""

    def __init__(self, cfg, fine, out: Path, state: dict, history: dict, data, progress, mixed: bool):
        self.cfg, self.fine, self.out, self.state, self.history = cfg, fine, out, state, history
        self.train_ds, self.val_ds, self.steps = data
        self.progress, self.mixed = progress, mixed
        self.ck = out / "checkpoints"

    def run(self, stage: int, model, resumed: bool) -> None:
        import keras

        cfg = self.cfg
        lr = cfg.lr if stage == 1 else (cfg.fine_tune_lr or cfg.lr * FINE_TUNE_LR_FACTOR)
        epochs = cfg.epochs if stage == 1 else cfg.fine_tune_epochs
        start = 0 if stage == 1 else self.state["stage1_epochs"]
        unfrozen = B.freeze_for_stage(model, stage, self.fine)
        if not resumed:
            if self.mixed and model.layers[-1].name != MIXED_CAST:
                model = fitting.training_model(model, True)
            model.compile(
                optimizer=fitting.optimizer(replace(cfg, lr=lr, epochs=epochs), self.steps),
                loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="top1")],
            )  # fmt: skip
        trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
        what = WHAT[stage].format(n=len(unfrozen), fine=self.fine)
        self.state["stages"][str(stage)] = {
            "stage": stage, "what": what, "lr": lr, "max_epochs": epochs, "trainable_params": trainable,
            "unfrozen_layers": unfrozen,
        }  # fmt: skip
        self.progress(f"stage {stage}: {what}, lr {lr:g}, {trainable:,} trainable parameters")
        vals, marks = self.history.get("val_top1", []), self.history.get("stage", [])
        own = [v for v, s in zip(vals, marks, strict=False) if s == stage]
        callbacks = [
            keras.callbacks.ModelCheckpoint(self.ck / "best.keras", monitor="val_top1", mode="max",
                                            save_best_only=True, initial_value_threshold=max(vals) if vals else None),
            keras.callbacks.ModelCheckpoint(self.ck / "last.keras"),
            self._lines(stage, start, epochs),
            *fitting.tensorboard(self.out / "tensorboard" / f"stage{stage}"),
        ]  # fmt: skip
        if stage == 1:
            callbacks.insert(1, keras.callbacks.ModelCheckpoint(
                self.ck / STAGE1_FILE, monitor="val_top1", mode="max", save_best_only=True,
                initial_value_threshold=max(own) if own else None))  # fmt: skip
        if cfg.patience:
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_top1", mode="max", patience=cfg.patience))
        initial = self.state["epoch"] if resumed else start
        if initial < start + epochs:
            model.fit(self.train_ds, validation_data=self.val_ds, epochs=start + epochs, initial_epoch=initial,
                      steps_per_epoch=self.steps, shuffle=False, callbacks=callbacks, verbose=0)  # fmt: skip
        if stage == 1:
            self.state["stage1_epochs"] = self.state["epoch"]
            self._save_state()

    def _save_state(self) -> None:
        write_json_atomic(self.ck / "state.json", {"schema_version": SCHEMA_VERSION, **self.state})

    def _lines(self, stage: int, start: int, epochs: int):
        """Progress lines, history.json and state.json after every epoch (for --resume)."""
        import keras

        run = self

        class Lines(keras.callbacks.Callback):
            t0 = 0.0

            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()
                run.progress(f"stage {stage} epoch {epoch - start + 1}/{epochs} training")

            def on_epoch_end(self, epoch, logs=None):
                logs, took = logs or {}, time.perf_counter() - self.t0
                h = run.history
                for k, v in logs.items():
                    h.setdefault(k, []).append(float(v))
                for k, v in (("epoch", epoch + 1), ("stage", stage), ("seconds", round(took, 2))):
                    h.setdefault(k, []).append(v)
                write_json_atomic(run.out / "history.json", h)
                run.state.update(epoch=epoch + 1, stage=stage)
                run._save_state()
                run.progress(
                    f"stage {stage} epoch {epoch - start + 1}/{epochs}: loss {logs.get('loss', float('nan')):.3f} "
                    f"top1 {logs.get('top1', 0):.3f} val_loss {logs.get('val_loss', float('nan')):.3f} "
                    f"val_top1 {logs.get('val_top1', 0):.3f} ({took:.1f} s)"
                )

        return Lines()

    def summary(self) -> list[dict]:
        """Per stage: what trained, epochs run, best epoch and validation top-1, seconds."""
        h, out = self.history, []
        for key, rec in sorted(self.state["stages"].items()):
            idx = [i for i, s in enumerate(h.get("stage", [])) if s == int(key)]
            vals = [h["val_top1"][i] for i in idx]
            best = int(np.argmax(vals)) if vals else None
            out.append({
                **rec,
                "epochs_run": len(idx),
                "best_epoch": h["epoch"][idx[best]] if vals else None,
                "best_val_top1": round(float(vals[best]), 4) if vals else None,
                "early_stopped": len(idx) < rec["max_epochs"],
                "seconds": round(float(sum(h["seconds"][i] for i in idx)), 1),
            })  # fmt: skip
        return out


def _record(cfg, prep, splits, device, stages: _Stages, ev: dict) -> dict:
    h = stages.history
    vals = h.get("val_top1", [])
    best = int(np.argmax(vals)) if vals else None
    per_stage = stages.summary()
    mcfg = cfg.model
    return {
        **fitting.run_header(cfg, mcfg, mcfg.classes, prep, splits, device),
        "weights": stages.state["source"],  # provenance of the pretrained weights (read by export)
        "transfer": {
            "source": stages.state["source"],
            "fine_tune": cfg.fine_tune,
            "head": {"layers": list(B.HEAD_LAYERS), "dropout": B.HEAD_DROPOUT, "classes": mcfg.classes},
            "stages": per_stage,
            "kept_stage": h["stage"][best] if vals else None,
        },
        "training": {
            "epochs_run": len(h.get("loss", [])),
            "best_epoch": h["epoch"][best] if vals else None,
            "best_val_top1_during_training": round(float(vals[best]), 4) if vals else None,
            "early_stopped": any(s["early_stopped"] for s in per_stage),
            "seconds": round(sum(s["seconds"] for s in per_stage), 1),
        },
        "batchnorm": {"kept": "pretrained (inference mode in both stages)"},
        "evaluation": {"split": "validation", "model_file": MODEL_FILE, **ev},
    }
