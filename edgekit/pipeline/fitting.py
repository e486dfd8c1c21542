"""The Keras pieces both trainers share (from scratch: edgekit.pipeline.train; fine-tuning:
edgekit.pipeline.transfer): device and strategy, optimizer and schedule, the mixed-precision cast,
callbacks that write history.json and state.json, and the header of run.json.

Keras and TensorFlow are imported inside the functions, so importing this module imports neither.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgekit.bundle.atomic import write_json_atomic
from edgekit.bundle.manifest import LABELS, SCHEMA_VERSION
from edgekit.config import ModelConfig, Preprocessing
from edgekit.errors import require_tensorflow
from edgekit.pipeline import distributed
from edgekit.pipeline.train_config import Progress, TrainConfig
from edgekit.pipeline.train_data import Splits


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


def fast_bn(model):
    """Moving statistics that follow the weights within ~20 steps (Keras' 0.99 needs hundreds, so
    validation during a short run sees stale statistics and stays at chance)."""
    from edgekit.models.batchnorm import batchnorm_layers

    for bn in batchnorm_layers(model):
        bn.momentum = min(bn.momentum, BN_MOMENTUM)
    return model


def tensorboard(log_dir: Path) -> list:
    """TensorBoard logs when tensorboard is installed (tensorflow-cpu does not depend on it)."""
    import importlib.util

    import keras

    if importlib.util.find_spec("tensorboard") is None:
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False)]


def training_model(model, mixed: bool):
    """Under mixed precision the logits are float16: add a float32 cast for a stable loss."""
    if not mixed:
        return model
    import keras

    out = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(model.output)
    return keras.Model(model.input, out, name=model.name)


def optimizer(cfg: TrainConfig, steps_per_epoch: int):
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


def predict(model, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch, verbose=0), np.float32)


# --------------------------------------------------------------------------- callbacks


def callbacks(progress: Progress, cfg: TrainConfig, state_path: Path, history_path: Path, history: dict):
    """Progress lines, plus history.json and checkpoints/state.json after every epoch (for --resume).

    Defined inside, so that importing this module does not import Keras."""
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
