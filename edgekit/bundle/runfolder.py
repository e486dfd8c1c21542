"""The training run folder, as `edgekit train` writes it and export, eval and sweep read it.

  run.json          config, model, labels, preprocessing, data split, device, evaluation of the saved model
  model.keras       the best-validation model, float32, BN statistics checked
  labels.txt        class order = output index
  history.json      per-epoch metrics (merged across --resume)
  samples.npz       uint8 images at the model input: a training sample (calibration) and held-out
                    validation images, so export/eval work even when the data folder has moved
  checkpoints/      best.keras, last.keras (+ optimizer state for --resume), state.json
  tensorboard/      TensorBoard logs
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekit.errors import ModelFileError

RUN_JSON = "run.json"



MODEL_FILE = "model.keras"



SAMPLES = "samples.npz"



def read_run(run: str | Path) -> dict:

    p = Path(run) / RUN_JSON
    if not p.is_file():
        raise ModelFileError(
            f"{run} is not a finished training run (no {RUN_JSON})", hint="run `edgekit train`"
        )
    return json.loads(p.read_text(encoding="utf-8"))



def load_samples(run: str | Path) -> dict[str, np.ndarray] | None:
    p = Path(run) / SAMPLES
    if not p.is_file():
        return None
    with np.load(p) as z:
        return {k: z[k] for k in z.files}
