"""Does a converted `.tflite` still follow the float model it came from? (export and convert)"""

from __future__ import annotations

import numpy as np

from edgekit.bundle.modelcheck import load_model
from edgekit.data.datasets import ImageBatch
from edgekit.device_scripts import edgelib
from edgekit.errors import VerificationError

# A converted model counts as broken when its outputs no longer follow the float model's. With random
# weights the top-1 classes of near-identical logits can flip freely, so agreement alone would raise
# false alarms on the headline command; correlation of the outputs catches real breakage (NaN, wrong
# scales, swapped layouts) either way.
MIN_OUTPUT_CORRELATION = 0.5



def verify(float_out: np.ndarray, tflite: bytes, calib: ImageBatch) -> dict:
    """Run the calibration images through the `.tflite` and compare with the Keras outputs.

    The model is probed in a subprocess before this process loads it (edgekit.bundle.modelcheck)."""
    m = load_model(tflite, name="the converted model")
    try:
        q_out = m.predict(calib.x)
    except Exception as exc:
        raise VerificationError(f"the converted model fails to run: {edgelib._one_line(exc)}") from None
    if not np.all(np.isfinite(q_out)):
        raise VerificationError(
            "the converted model outputs NaN or Inf", hint="this is a converter bug; report it"
        )
    diff = np.abs(q_out - float_out)
    agreement = float(np.mean(q_out.argmax(-1) == float_out.argmax(-1)))
    corr = correlation(float_out, q_out)
    classes = float_out.shape[-1]
    result = {
        "images": int(calib.x.shape[0]),
        "synthetic_inputs": calib.synthetic,
        "top1_agreement": round(agreement, 4),
        "output_correlation": round(corr, 4),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "float_output_range": float(float_out.max() - float_out.min()),
        "chance_agreement": round(1.0 / classes, 4),
    }
    if corr < MIN_OUTPUT_CORRELATION:
        raise VerificationError(
            f"the converted model does not follow the float model: output correlation {corr:.2f}, "
            f"top-1 agreement {agreement:.0%} (chance {1 / classes:.0%})",
            hint="check the calibration data; try --quantize float16 to isolate int8",
        )
    return result



def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel().astype(np.float64) - a.mean()
    b = b.ravel().astype(np.float64) - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    if den == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float((a * b).sum() / den)



def keras_predict(model, x: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch, verbose=0), dtype=np.float32)
