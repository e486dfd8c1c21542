"""`edgekit train`'s configuration (TrainConfig): read by the CLI, the sweep, both trainers and
--resume (checkpoints/state.json holds its to_dict). Importing it imports no TensorFlow."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from edgekit.config import ModelConfig, WeightsRequest
from edgekit.errors import UsageError
from edgekit.pipeline.backbone import DEFAULT_FINE_TUNE, DEFAULT_FINE_TUNE_EPOCHS, FineTune

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
    fine_tune_epochs: int = DEFAULT_FINE_TUNE_EPOCHS
    fine_tune_lr: float | None = None  # None: lr × backbone.FINE_TUNE_LR_FACTOR

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
