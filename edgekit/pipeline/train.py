"""`edgekit train`: train a zoo model on a labelled dataset and write a run folder.

The run folder it writes is described in edgekit.bundle.runfolder (export, eval and sweep read it).

Batch norm: after a short run the moving statistics can lag far behind the weights (eval accuracy
near chance while training accuracy is fine), so the best checkpoint's statistics are recomputed on
clean training images, the better of the two on validation is kept, and the *saved file* is then
reloaded and evaluated: the figures in run.json are those of the model on disk.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from edgekit.bundle.atomic import write_json_atomic
from edgekit.bundle.keras_model import load_keras
from edgekit.bundle.manifest import LABELS, SCHEMA_VERSION
from edgekit.bundle.runfolder import MODEL_FILE, RUN_JSON, SAMPLES
from edgekit.config import ModelConfig, Preprocessing, WeightsRequest
from edgekit.data import datasets as D
from edgekit.data import tfdata
from edgekit.errors import InputDataError, UsageError, require_tensorflow
from edgekit.pipeline import distributed
from edgekit.pipeline.backbone import DEFAULT_FINE_TUNE, FineTune
from edgekit.pipeline.metrics import scores
from edgekit.pipeline.train_data import Splits, clean_train_sample, prepare_data, write_samples

Progress = Callable[[str], None]
SCHEDULES = ("cosine", "step")
OPTIMIZERS = ("adamw", "sgd")

@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig | None  # classes are taken from the data; None with `weights`: the weights' own
    data: str
    output: str
    val_data: str | None = None
    val_split: float = 0.2
    labels_file: str | None = None
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    schedule: str = "cosine"
    optimizer: str = "adamw"
    seed: int = 0
    patience: int = 5  # early stopping on validation top-1; 0 disables
    augment: bool = True
    mixed_precision: bool | None = None  # None: on when a GPU is used
    # transfer learning (edgekit.pipeline.transfer): pretrained weights, stage 2 of the fine-tune
    weights: str | None = None
    weights_request: WeightsRequest | None = None  # flags given beside --weights, checked against them
    fine_tune: str = DEFAULT_FINE_TUNE
    fine_tune_epochs: int = 10
    fine_tune_lr: float | None = None  # None: a tenth of lr

    def __post_init__(self) -> None:
        if self.model is None and not self.weights:
            raise UsageError("a model is needed: pass --model (or --weights to start from pretrained weights)")
        FineTune.parse(self.fine_tune)  # one line naming the bad value
        if self.fine_tune_epochs < 0:
            raise UsageError(f"--fine-tune-epochs must be ≥ 0; received {self.fine_tune_epochs}")
        if self.fine_tune_lr is not None and not self.fine_tune_lr > 0:
            raise UsageError(f"--fine-tune-lr must be positive; received {self.fine_tune_lr}")
        if self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1; received {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1; received {self.batch_size}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be positive; received {self.lr}")
        if self.weight_decay < 0:
            raise UsageError(f"--weight-decay must be ≥ 0; received {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise UsageError(f"--label-smoothing must be in [0, 1); received {self.label_smoothing}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"--schedule must be one of {', '.join(SCHEDULES)}; received {self.schedule!r}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(
                f"--optimizer must be one of {', '.join(OPTIMIZERS)}; received {self.optimizer!r}"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict() if self.model is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        req = d.get("weights_request")
        return cls(**{
            **d,
            "model": ModelConfig.from_dict(d["model"]) if d.get("model") else None,
            "weights_request": WeightsRequest(**req) if req else None,
        })  # fmt: skip


# --------------------------------------------------------------------------- device / strategy


def select_device(mixed: bool | None):
    """(strategy, device record). GPU with mixed precision when present; several GPUs mirror;
    TF_CONFIG (several machines) uses MultiWorkerMirroredStrategy, TensorFlow's own distribution."""
    tf = require_tensorflow()
    import keras

    from edgekit.device_scripts import edgelib

    gpus = tf.config.list_physical_devices("GPU")
    if distributed.tf_config() is not None:
        strategy = distributed.strategy()
    elif len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    use_mixed = bool(gpus) if mixed is None else bool(mixed)
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    if gpus:
        details = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
        device = {"type": "GPU", "count": len(gpus), "name": ", ".join(details)}
    else:
        device = {"type": "CPU", "count": 1, "name": edgelib.cpu_info()["model"]}
    device.update(
        mixed_precision=use_mixed,
        strategy=type(strategy).__name__,
        replicas=int(strategy.num_replicas_in_sync),
        workers=distributed.worker_count(distributed.tf_config()),
    )
    return strategy, device


# --------------------------------------------------------------------------- training


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
        cfg, initial_epoch = _resume_config(cfg, state_path, cluster, resume_epochs)
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
    strategy, device = select_device(cfg.mixed_precision)
    last = None
    if resume and distributed.is_chief(cluster):  # before the first all-reduce: a bad file fails here
        last = load_keras(ck / "last.keras", compile=True)
    labels = splits.train.class_names
    if cluster is not None:
        cfg, initial_epoch = _chief_config(strategy, cluster, cfg, initial_epoch, labels)
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
        _restore(train_model, last, strategy, cluster)
        del last
        if (out / "history.json").is_file():
            history = _history_until(json.loads((out / "history.json").read_text()), initial_epoch)
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
        *([] if cluster else _tensorboard(out / "tensorboard")),
        *_callbacks(progress, cfg, state_path, out / "history.json", history),
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
    before = scores(_predict(model, x_val), y_val, labels)["top1"]
    saved_stats = [np.array(w) for w in model.get_weights()]
    recal_src = clean_train_sample(splits, prep, cfg.seed)
    recalibrate_batchnorm(model, recal_src)
    after = scores(_predict(model, x_val), y_val, labels)["top1"]
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
    ev = scores(_predict(reloaded, x_val), y_val, labels)
    write_samples(out / SAMPLES, splits, cfg.seed)

    epochs_run = len(history.get("loss", []))
    val_hist = history.get("val_top1", [])
    run = {
        **run_header(cfg, mcfg, len(labels), prep, splits, device),
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


def _resume_config(cfg: TrainConfig, state_path: Path, cluster: dict | None,
                   resume_epochs: int | None) -> tuple[TrainConfig, int]:  # fmt: skip
    """(config, epochs done) of the run to continue, from checkpoints/state.json.

    A worker other than the chief may have lost its checkpoints (killed mid-write, another disk): it
    starts from the command's config, and takes the chief's config, epoch and weights at start-up."""
    try:
        saved = json.loads(state_path.read_text())
        saved_cfg, done = TrainConfig.from_dict(saved["config"]), int(saved["epoch"])
    except FileNotFoundError:
        saved_cfg = None
    except (ValueError, KeyError, TypeError, UsageError) as exc:
        if distributed.is_chief(cluster):
            raise InputDataError(
                f"{state_path} is unreadable ({exc.__class__.__name__})", hint="drop --resume and train into a new -o"
            ) from None
        saved_cfg = None
    if saved_cfg is not None:
        return replace(saved_cfg, epochs=max(resume_epochs or saved_cfg.epochs, done)), done
    if distributed.is_chief(cluster):
        raise InputDataError(f"{state_path.parent.parent} has no checkpoint to resume (checkpoints/state.json)",
                             hint="drop --resume")  # fmt: skip
    if not cfg.data:
        raise InputDataError(
            f"worker {cluster['task']['index']} has no checkpoint of its own ({state_path})",
            hint="start it with the first run's arguments (--data, --model, ...) plus --resume",
        )
    return cfg, 0


def _chief_config(strategy, cluster: dict, cfg: TrainConfig, initial_epoch: int,
                  labels: list[str]) -> tuple[TrainConfig, int]:  # fmt: skip
    """Every worker trains with the chief's config and (on --resume) continues from the chief's epoch,
    whatever its own command or checkpoint said; only the paths stay its own. A worker whose data has
    other classes stops here with one line (the chief's start-up watchdog then ends the chief)."""
    mine = {"config": cfg.to_dict(), "epoch": initial_epoch, "labels": list(labels)}
    chief = distributed.sync_json_from_chief(strategy, mine if distributed.is_chief(cluster) else None)
    if chief["labels"] != list(labels):
        raise UsageError(
            f"worker {cluster['task']['index']}'s data has classes {', '.join(labels)}; "
            f"the chief's has {', '.join(chief['labels'])}",
            hint="give every worker the same data (the same folders, or copies of them)",
        )
    from edgekit.models import variant_name

    theirs = TrainConfig.from_dict(chief["config"])
    if variant_name(theirs.model) != variant_name(cfg.model):  # its data is decoded at its resolution
        raise UsageError(
            f"worker {cluster['task']['index']} was started with {variant_name(cfg.model)}; "
            f"the chief's run is {variant_name(theirs.model)}",
            hint="start every worker with the same command",
        )
    own = {k: getattr(cfg, k) for k in ("data", "output", "val_data", "labels_file")}
    return replace(theirs, **own), int(chief["epoch"])


def _restore(train_model, last, strategy, cluster: dict | None) -> None:
    """Weights and optimizer state (its step count too, so the learning-rate schedule continues) of
    the checkpoint `last` into the freshly built `train_model`; on several workers, from the chief's."""
    variables = list(train_model.weights) + list(train_model.optimizer.variables)
    values = None
    if last is not None:
        values = [np.asarray(v) for v in [*last.weights, *last.optimizer.variables]]
    if cluster is not None:
        distributed.sync_variables_from_chief(strategy, variables, values)
        return
    if not distributed.fits(variables, values):
        raise distributed.checkpoint_misfit()
    for v, x in zip(variables, values, strict=True):
        v.assign(x)


def _history_until(history: dict, epoch: int) -> dict:
    """The history of epochs 1..`epoch` (a worker's own file may run ahead of the chief's)."""
    keep = sum(1 for e in history.get("epoch", []) if e <= epoch)
    return {k: list(v[:keep]) for k, v in history.items()}


def _compiled_model(cfg: TrainConfig, mcfg: ModelConfig, steps: int, n_classes: int, mixed: bool):
    """The model as trained: built, fast batch-norm, a float32 head under mixed precision, compiled."""
    import keras

    from edgekit.models import build_model

    model = _training_model(_fast_bn(build_model(mcfg, seed=cfg.seed)), mixed)
    model.compile(
        optimizer=_optimizer(cfg, steps),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="top1"),
            keras.metrics.TopKCategoricalAccuracy(k=min(5, n_classes), name="top5"),
        ],
    )
    return model


BN_MOMENTUM = 0.9


def run_header(cfg: TrainConfig, mcfg: ModelConfig, num_classes: int, prep: Preprocessing, splits: Splits,
               device: dict) -> dict:  # fmt: skip
    """The part of run.json every run has (from scratch or fine-tuned): model, labels, data, device."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "edgekit-run",
        "model": mcfg.to_dict(),
        "labels_file": LABELS,
        "num_classes": num_classes,
        "preprocessing": prep.to_dict(),
        "output_kind": "logits",
        "config": cfg.to_dict(),
        "data": {
            "source": splits.train.source,
            "train_images": len(splits.train),
            "val_images": len(splits.val_img.y),
            "val_source": cfg.val_data or f"{cfg.val_split:.0%} stratified split, seed {cfg.seed}",
            "class_counts": splits.train.counts(),
            "skipped": list(splits.skipped),
            "cached_in_memory": splits.train_img is not None,
        },
        "device": device,
    }


def _fast_bn(model):
    """Moving statistics that follow the weights within ~20 steps (Keras' 0.99 needs hundreds, so
    validation during a short run sees stale statistics and stays at chance)."""
    from edgekit.models.batchnorm import batchnorm_layers

    for bn in batchnorm_layers(model):
        bn.momentum = min(bn.momentum, BN_MOMENTUM)
    return model


def _tensorboard(log_dir: Path) -> list:
    """TensorBoard logs when tensorboard is installed (tensorflow-cpu does not depend on it)."""
    import importlib.util

    import keras

    if importlib.util.find_spec("tensorboard") is None:
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False)]


def _training_model(model, mixed: bool):
    """Under mixed precision the logits are float16: add a float32 cast for a stable loss."""
    if not mixed:
        return model
    import keras

    out = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(model.output)
    return keras.Model(model.input, out, name=model.name)


def _optimizer(cfg: TrainConfig, steps_per_epoch: int):
    import keras

    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=total, alpha=0.01)
    else:  # step: ÷10 at 50% and 75% of the epochs
        bounds = [int(total * 0.5), int(total * 0.75)]
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(bounds, [cfg.lr, cfg.lr / 10, cfg.lr / 100])
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay or None)
    return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)


def _predict(model, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch, verbose=0), np.float32)


# --------------------------------------------------------------------------- callbacks


def _callbacks(progress: Progress, cfg: TrainConfig, state_path: Path, history_path: Path, history: dict):
    """Progress lines, plus history.json and checkpoints/state.json after every epoch (for --resume).

    Defined here so that importing this module does not import Keras."""
    import keras

    class ProgressLines(keras.callbacks.Callback):
        t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()
            progress(f"epoch {epoch + 1}/{cfg.epochs} training")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            lr = float(np.asarray(self.model.optimizer.learning_rate))
            progress(
                f"epoch {epoch + 1}/{cfg.epochs}: loss {logs.get('loss', float('nan')):.3f} "
                f"top1 {logs.get('top1', 0):.3f} val_loss {logs.get('val_loss', float('nan')):.3f} "
                f"val_top1 {logs.get('val_top1', 0):.3f} lr {lr:.2e} ({time.perf_counter() - self.t0:.1f} s)"
            )

    class State(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            for k, v in (logs or {}).items():
                history.setdefault(k, []).append(float(v))
            history.setdefault("epoch", []).append(epoch + 1)
            write_json_atomic(history_path, history)
            write_json_atomic(
                state_path, {"schema_version": SCHEMA_VERSION, "epoch": epoch + 1, "config": cfg.to_dict()}
            )

    return [State(), ProgressLines()]
