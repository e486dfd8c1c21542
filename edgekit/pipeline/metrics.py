"""Accuracy figures from model outputs (no TensorFlow): train, eval, export and sweep share them."""

from __future__ import annotations

import numpy as np


def scores(outputs: np.ndarray, y: np.ndarray, labels) -> dict:
    """top-1/top-5 (fractions), per-class accuracy and a confusion matrix.

    `y` holds model output indices. The confusion matrix has a row per class present in `y` and a
    column per such class plus "other" (predictions outside them: a 1001-class model stays readable).
    """
    labels = list(labels)
    n = int(y.shape[0])
    if n == 0:
        return {"top1": None, "top5": None, "n": 0}
    pred = outputs.argmax(-1)
    k = min(5, outputs.shape[-1])
    topk = np.argsort(-outputs, axis=-1)[:, :k]
    present = sorted(set(int(c) for c in y))
    col = {c: i for i, c in enumerate(present)}
    conf = np.zeros((len(present), len(present) + 1), np.int64)
    for t, p in zip(y, pred, strict=True):
        conf[col[int(t)], col.get(int(p), len(present))] += 1
    per_class = {labels[c]: round(float(np.mean(pred[y == c] == c)), 4) for c in present}
    return {
        "top1": round(float(np.mean(pred == y)), 4),
        "top5": round(float(np.mean((topk == y[:, None]).any(-1))), 4),
        "top5_k": int(k),
        "n": n,
        "per_class": per_class,
        "confusion": {"labels": [labels[c] for c in present] + ["other"], "matrix": conf.tolist()},
    }



def compare(ref_out: np.ndarray, q_out: np.ndarray, ref: dict, q: dict) -> dict:
    """Agreement, accuracy change (tflite − reference, fractions) and output differences."""
    out = {
        "agreement": round(float(np.mean(ref_out.argmax(-1) == q_out.argmax(-1))), 4),
        "top1_change": round(q["top1"] - ref["top1"], 4),
        "top5_change": round(q["top5"] - ref["top5"], 4),
    }
    if ref_out.shape == q_out.shape:
        d = np.abs(ref_out.astype(np.float64) - q_out)
        out["output_diff"] = {"mean_abs": float(d.mean()), "max_abs": float(d.max())}
    return out
