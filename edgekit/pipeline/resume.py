"""--resume and several workers: which config and epoch a run continues from, and whose weights.

A run's checkpoints/state.json (written after every epoch by fitting.callbacks) holds its config and
epoch; on several workers the chief's config, epoch and weights win over each worker's own.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgekit.errors import InputDataError, UsageError
from edgekit.pipeline import distributed
from edgekit.pipeline.train_config import TrainConfig


def resume_config(cfg: TrainConfig, state_path: Path, cluster: dict | None,
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


def chief_config(strategy, cluster: dict, cfg: TrainConfig, initial_epoch: int,
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


def restore(train_model, last, strategy, cluster: dict | None) -> None:
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


def history_until(history: dict, epoch: int) -> dict:
    """The history of epochs 1..`epoch` (a worker's own file may run ahead of the chief's)."""
    keep = sum(1 for e in history.get("epoch", []) if e <= epoch)
    return {k: list(v[:keep]) for k, v in history.items()}
