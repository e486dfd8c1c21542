"""`edgekit train`: train a zoo model on a labelled dataset and write a run folder.

The run folder it writes is described in edgekit.bundle.runfolder (export, eval and sweep read it).

Its parts: the config (train_config), what --resume and several workers continue from (resume), the
Keras pieces shared with fine-tuning (fitting).

Batch norm: after a short run the moving statistics can lag far behind the weights (eval accuracy
near chance while training accuracy is fine), so the best checkpoint's statistics are recomputed on
clean training images, the better of the two on validation is kept, and the *saved file* is then
reloaded and evaluated: the figures in run.json are those of the model on disk.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgekit.bundle.atomic import write_json_atomic
from edgekit.bundle.keras_model import load_keras
from edgekit.bundle.manifest import LABELS
from edgekit.bundle.runfolder import MODEL_FILE, RUN_JSON, SAMPLES
from edgekit.config import ModelConfig, Preprocessing
from edgekit.data import datasets as D
from edgekit.data import tfdata
from edgekit.errors import UsageError, require_tensorflow
from edgekit.pipeline import distributed, fitting
from edgekit.pipeline import resume as resuming  # `resume` is train()'s flag
from edgekit.pipeline.metrics import scores
from edgekit.pipeline.train_config import Progress, TrainConfig
from edgekit.pipeline.train_data import clean_train_sample, prepare_data, write_samples

__all__ = ["TrainConfig", "train"]  # TrainConfig lives in train_config; importable from here as before


def train(
    cfg: TrainConfig,
    progress: Progress = lambda _m: None,
    resume: bool = False,
    resume_epochs: int | None = None,
) -> dict:
    """Train and write the run folder; returns the run summary (run.json).

    With `resume`, the run's saved config is used; `resume_epochs` may extend it."""
    cluster = distributed.tf_config()
    # on several workers, start-up is bounded until the first training step: a worker that never
    # joins (or failed before joining) ends this one in one line instead of a hang
    startup = distributed.startup_watchdog() if cluster is not None else None
    try:
        return _train(cfg, progress, resume, resume_epochs, cluster, startup)
    except Exception as exc:
        if cluster is not None and distributed.is_peer_loss(exc):  # fit handles its own: this is start-up
            distributed.abandon_startup(exc)
        raise
    finally:
        if startup is not None:
            startup.stop()


def _train(cfg: TrainConfig, progress: Progress, resume: bool, resume_epochs: int | None, cluster: dict | None,
           startup: distributed.StepWatchdog | None) -> dict:  # fmt: skip
    out = Path(cfg.output)
    if not distributed.is_chief(cluster):  # the chief writes the run; the others only their checkpoints
        out = distributed.worker_dir(out, cluster)
        progress(f"worker {cluster['task']['index']}: checkpoints in {out}")
    ck = out / "checkpoints"
    state_path = ck / "state.json"
    initial_epoch = 0
    if resume:
        cfg, initial_epoch = resuming.resume_config(cfg, state_path, cluster, resume_epochs)
    elif (out / RUN_JSON).exists() or state_path.exists():
        raise UsageError(
            f"run folder {out} already holds a run", hint="pass --resume to continue it, or another -o"
        )

    if cfg.weights:  # this function trains from scratch; edgekit.pipeline.transfer.run_training dispatches
        raise UsageError(f"{out} is a transfer-learning run: train it through edgekit.pipeline.transfer")
    res = cfg.model.resolution
    prep = Preprocessing(size=(res, res))
    splits = prepare_data(cfg, (res, res), progress)  # before TensorFlow: bad data fails fast

    tf = require_tensorflow()
    import keras

    from edgekit.models import build_model, resolve_config
    from edgekit.models.batchnorm import recalibrate_batchnorm

    keras.utils.set_random_seed(cfg.seed)
    if startup is not None:
        startup.start()
    strategy, device = fitting.select_device(cfg.mixed_precision)
    last = None
    if resume and distributed.is_chief(cluster):  # before the first all-reduce: a bad file fails here
        last = load_keras(ck / "last.keras", compile=True)
    labels = splits.train.class_names
    if cluster is not None:
        cfg, initial_epoch = resuming.chief_config(strategy, cluster, cfg, initial_epoch, labels)
    mcfg = resolve_config(
        cfg.model.family,
        alpha=cfg.model.alpha,
        resolution=res,
        classes=len(labels),
        shortcut=cfg.model.shortcut,
    )
    cfg = replace(cfg, model=mcfg)
    ck.mkdir(parents=True, exist_ok=True)
    (out / LABELS).write_text("\n".join(labels) + "\n", encoding="utf-8")

    batch = cfg.batch_size * strategy.num_replicas_in_sync
    steps = max(1, int(np.ceil(len(splits.train) / batch)))
    train_ds = tfdata.tf_dataset(
        splits.train,
        prep.to_dict(),
        batch_size=batch,
        training=True,
        seed=cfg.seed,
        augment=cfg.augment,
        cached=splits.train_img,
    )
    val_ds = tfdata.tf_dataset(splits.val, prep.to_dict(), batch_size=batch, training=False, cached=splits.val_img)

    history: dict[str, list] = {}
    with strategy.scope():
        train_model = _compiled_model(cfg, mcfg, steps, len(labels), device["mixed_precision"])
        if resume:
            train_model.optimizer.build(train_model.trainable_variables)
    if resume:
        resuming.restore(train_model, last, strategy, cluster)
        del last
        if (out / "history.json").is_file():
            history = resuming.history_until(json.loads((out / "history.json").read_text()), initial_epoch)
        progress(f"resuming at epoch {initial_epoch + 1}/{cfg.epochs}")
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            ck / "best.keras",
            monitor="val_top1",
            mode="max",
            save_best_only=True,
            # on --resume, only a better epoch than the ones before replaces best.keras
            initial_value_threshold=max(history["val_top1"]) if history.get("val_top1") else None,
        ),
        keras.callbacks.ModelCheckpoint(ck / "last.keras"),
        *([] if cluster else fitting.tensorboard(out / "tensorboard")),
        *fitting.callbacks(progress, cfg, state_path, out / "history.json", history),
    ]
    if cfg.patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_top1", mode="max", patience=cfg.patience, verbose=0)
        )
    t0 = time.perf_counter()
    if startup is not None:  # fit's own watchdog takes over (with the first step's grace)
        startup.stop()
    if initial_epoch < cfg.epochs and cluster is not None:
        distributed.fit(
            train_model, train_ds, val_ds, strategy=strategy, epochs=cfg.epochs, initial_epoch=initial_epoch,
            steps=steps, global_batch=batch, callbacks=callbacks,
        )  # fmt: skip
    elif initial_epoch < cfg.epochs:
        train_model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=cfg.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            shuffle=False,  # the tf.data pipeline shuffles (seeded); Keras cannot shuffle a dataset
            callbacks=callbacks,
            verbose=0,
        )
    train_s = time.perf_counter() - t0
    history = json.loads((out / "history.json").read_text())

    progress("checking batch-norm statistics of the best checkpoint")
    keras.mixed_precision.set_global_policy("float32")  # the saved model is plain float32
    best = load_keras(ck / "best.keras")
    model = build_model(mcfg, seed=cfg.seed)
    model.set_weights(best.get_weights())
    x_val = D.normalise(splits.val_img.images, prep.to_dict())
    y_val = splits.val_img.y
    before = scores(fitting.predict(model, x_val), y_val, labels)["top1"]
    saved_stats = [np.array(w) for w in model.get_weights()]
    recal_src = clean_train_sample(splits, prep, cfg.seed)
    recalibrate_batchnorm(model, recal_src)
    after = scores(fitting.predict(model, x_val), y_val, labels)["top1"]
    if after + 1e-9 < before:
        model.set_weights(saved_stats)  # training statistics were better: keep them
    bn = {
        "val_top1_training_statistics": round(before, 4),
        "val_top1_recalibrated": round(after, 4),
        "kept": "recalibrated" if after + 1e-9 >= before else "training",
        "recalibration_images": int(len(recal_src)),
    }

    model.save(out / MODEL_FILE)
    reloaded = load_keras(out / MODEL_FILE)
    ev = scores(fitting.predict(reloaded, x_val), y_val, labels)
    write_samples(out / SAMPLES, splits, cfg.seed)

    epochs_run = len(history.get("loss", []))
    val_hist = history.get("val_top1", [])
    run = {
        **fitting.run_header(cfg, mcfg, len(labels), prep, splits, device),
        "training": {
            "epochs_run": epochs_run,
            "best_epoch": int(np.argmax(val_hist)) + 1 if val_hist else None,
            "best_val_top1_during_training": round(float(max(val_hist)), 4) if val_hist else None,
            "early_stopped": epochs_run < cfg.epochs,
            "seconds": round(train_s, 1),
            "workers": device["workers"],
            "global_batch": batch,
            "images_per_s": round(steps * batch * max(0, epochs_run - initial_epoch) / train_s, 1) if train_s else None,
            "tf_version": tf.__version__,
            "keras_version": keras.__version__,
        },
        "batchnorm": bn,
        "evaluation": {"split": "validation", "model_file": MODEL_FILE, **ev},
    }
    write_json_atomic(out / RUN_JSON, run)
    return run


def _compiled_model(cfg: TrainConfig, mcfg: ModelConfig, steps: int, n_classes: int, mixed: bool):
    """The model as trained: built, fast batch-norm, a float32 head under mixed precision, compiled."""
    import keras

    from edgekit.models import build_model

    model = fitting.training_model(fitting.fast_bn(build_model(mcfg, seed=cfg.seed)), mixed)
    model.compile(
        optimizer=fitting.optimizer(cfg, steps),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="top1"),
            keras.metrics.TopKCategoricalAccuracy(k=min(5, n_classes), name="top5"),
        ],
    )
    return model
