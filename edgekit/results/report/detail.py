"""One run in detail for the report: per-class accuracy and the confusion matrix, from whatever the
eval recorded (a matrix, per-class figures or raw predictions), labelled from the run or its bundle."""

from __future__ import annotations

from pathlib import Path

from edgekit.results.store import Store


def chosen_run(store: Store, run_id: int | None, evals: list[dict]) -> dict | None:
    """Confusion matrix and per-class accuracy of --run, else of the newest eval that has them."""
    from edgekit.errors import UsageError

    cands = [run_id] if run_id is not None else [r["id"] for r in evals[:20]]
    for rid in cands:
        run = store.get(rid)
        detail = class_detail(run["result"], run.get("manifest"))
        if detail:
            return {"id": rid, "model": run["model_name"], "device": run["device"], **detail}
        if run_id is not None:
            raise UsageError(f"run {run_id} ({run['kind']}) has no confusion matrix or per-class accuracy")
    return None


def class_detail(result, manifest: dict | None = None) -> dict | None:
    """Per-class accuracy and confusion matrix of one eval, whichever producer wrote it.

    Desktop eval: under `tflite` (confusion {labels, matrix}, rows true, columns predicted + "other").
    Device eval: per_class under `device_result`, and per-image predictions to count a matrix from.
    """
    if not isinstance(result, dict):
        return None
    srcs = [result] + [result[k] for k in ("tflite", "device_result") if isinstance(result.get(k), dict)]
    conf = _first(srcs, ("confusion", "confusion_matrix"))
    labels = _first(srcs, ("labels", "class_names"))
    labels = labels if isinstance(labels, list) else None
    col_labels = None
    if isinstance(conf, dict):
        col_labels = conf.get("labels")
        conf = conf.get("matrix") or conf.get("counts")
    if not (isinstance(conf, list) and conf and all(isinstance(r, list) for r in conf)):
        conf = None
    per_class = _per_class(_first(srcs, ("per_class", "per_class_accuracy")), labels)
    if conf is None:
        conf, col_labels = _confusion_from_predictions(_first(srcs, ("predictions",)), labels)
    if conf and not per_class:
        per_class = [
            {
                "label": None,
                "accuracy": (row[i] / sum(row)) if sum(row) and i < len(row) else 0.0,
                "n": sum(row),
            }
            for i, row in enumerate(conf)
        ]
    if not conf and not per_class:
        return None
    n_rows = len(conf) if conf else len(per_class)
    n_cols = len(conf[0]) if conf else n_rows
    if isinstance(col_labels, list) and len(col_labels) == n_cols:
        row_labels = col_labels[:n_rows]
    elif labels and len(labels) == n_rows:
        row_labels = col_labels = list(labels)
    elif per_class and all(p["label"] for p in per_class) and len(per_class) == n_rows:
        row_labels = col_labels = [p["label"] for p in per_class]
    else:
        row_labels = col_labels = _bundle_labels(result, manifest, n_rows) or [
            f"class_{i}" for i in range(n_rows)
        ]
    if len(col_labels) != n_cols:
        col_labels = list(row_labels) + [f"col_{j}" for j in range(len(row_labels), n_cols)]
    for i, p in enumerate(per_class):
        if p["label"] is None and i < len(row_labels):
            p["label"] = row_labels[i]
    return {
        "labels": [str(x) for x in row_labels],
        "predicted_labels": [str(x) for x in col_labels],
        "confusion": conf,
        "per_class": per_class,
    }


def _confusion_from_predictions(preds, labels) -> tuple[list[list[int]] | None, list | None]:
    """Rows: true classes present; columns: those classes + "other" (as the desktop eval counts)."""
    if not isinstance(preds, list) or not labels:
        return None, None
    pairs = [
        (p["label"], p["pred"])
        for p in preds
        if isinstance(p, dict) and isinstance(p.get("label"), int) and isinstance(p.get("pred"), int)
    ]
    present = sorted({t for t, _ in pairs if 0 <= t < len(labels)})
    if not present:
        return None, None
    col = {c: i for i, c in enumerate(present)}
    conf = [[0] * (len(present) + 1) for _ in present]
    for t, p in pairs:
        if t in col:
            conf[col[t]][col.get(p, len(present))] += 1
    return conf, [labels[c] for c in present] + ["other"]


def _first(srcs: list[dict], keys):
    for k in keys:
        for d in srcs:
            if d.get(k) is not None:
                return d[k]
    return None


def _per_class(per, labels) -> list[dict]:
    out = []
    if isinstance(per, dict):
        for k, v in per.items():
            acc = v.get("accuracy", v.get("top1")) if isinstance(v, dict) else v
            n = v.get("n", v.get("count")) if isinstance(v, dict) else None
            if isinstance(acc, (int, float)):
                out.append({"label": str(k), "accuracy": float(acc), "n": n})
    elif isinstance(per, list):
        for i, v in enumerate(per):
            if isinstance(v, dict):
                acc = v.get("accuracy", v.get("top1"))
                if isinstance(acc, (int, float)):
                    out.append(
                        {
                            "label": v.get("label", v.get("class")),
                            "accuracy": float(acc),
                            "n": v.get("n", v.get("count")),
                        }
                    )
            elif isinstance(v, (int, float)):
                lab = labels[i] if isinstance(labels, list) and i < len(labels) else None
                out.append({"label": lab, "accuracy": float(v), "n": None})
    for p in out:
        if p["accuracy"] > 1.0:  # a producer that reports percentages
            p["accuracy"] /= 100.0
    return out


def _bundle_labels(result: dict, manifest: dict | None, n: int) -> list[str] | None:
    path = result.get("bundle") or (manifest or {}).get("bundle")
    if not path:
        return None
    f = Path(path) / "labels.txt"
    try:
        labels = [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError):  # a report shows what it can: indices instead of names
        return None
    return labels if len(labels) == n else None
