#!/usr/bin/env python3
"""Accuracy of a `.tflite` on this machine over labelled images (runs on the device as it is).

    python3 eval_images.py --model model.tflite --data DIR|list.csv|inputs.npz [--labels labels.txt]
        [--threads 4] [--top-k 5] [--limit N] [--json]

DIR is DIR/<class>/*.jpg (images directly in DIR are predicted without a label); a CSV has rows
`path,label` (paths relative to the CSV, label a class name or index); an .npz holds inputs already
preprocessed by edgekit (keys x, y, paths), so a device without OpenCV or Pillow is evaluated
bit-for-bit on the desktop's inputs. Needs Python 3.9+, numpy and one TFLite interpreter.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import edgelib
import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Top-1/top-5 accuracy of a .tflite on labelled images.")
    p.add_argument("--model", required=True, help="the .tflite file")
    p.add_argument("--data", required=True, help="image folder DIR/<class>/*, a path,label CSV or an .npz")
    p.add_argument("--labels", default=None, help="labels file (default: the bundle's or the model's)")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads")
    p.add_argument("--top-k", type=int, default=5, help="classes kept per image in the predictions")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    p.add_argument("--runtime", default=None, choices=edgelib.RUNTIMES, help="force one interpreter")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    if args.top_k < 1:
        p.error("--top-k must be >= 1")
    return args


# --------------------------------------------------------------------------- data sets


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


class LabelMap:
    """Class names (folder names, CSV labels) -> the model's output indices."""

    def __init__(self, labels: list, names: list) -> None:
        self.labels = labels
        by_name, where = {}, {}
        for i, label in enumerate(labels):
            by_name.setdefault(label, i)
            by_name.setdefault(_norm(label), i)
            where.setdefault(_norm(label), []).append(i)
        self.index = {}
        missing = []
        for name in names:
            i = by_name.get(name, by_name.get(_norm(name)))
            if i is None:
                missing.append(name)
            elif len(where.get(_norm(labels[i]), ())) > 1:
                # A label file may repeat a name (ImageNet lists 'crane' twice); a class called so is ambiguous.
                raise edgelib.InputFailure(
                    f"class {name!r} of the data matches {len(where[_norm(labels[i])])} labels of the model "
                    f"(indices {', '.join(map(str, where[_norm(labels[i])]))}): rename one in the labels file"
                )
            else:
                self.index[name] = i
        self.note = None
        if missing and not self.index and len(names) in (len(labels), len(labels) - 1):
            # No name matches at all: the classes are in sorted order (a background class first
            # when the labels have one more entry), the convention of folder data sets.
            offset = len(labels) - len(names)
            self.index = {name: i + offset for i, name in enumerate(sorted(names))}
            self.note = (
                f"no class name matches the model's labels; mapped the {len(names)} classes in sorted "
                f"order{' after the first (background) label' if offset else ''}"
            )
            edgelib.warn(self.note)
        elif missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise edgelib.InputFailure(
                f"{len(missing)} class(es) of the data are not among the model's {len(labels)} labels "
                f"({shown}): name folders/labels like the labels file or pass --labels"
            )

    def __call__(self, name: str) -> int:
        if name.lstrip("-").isdigit() and name not in self.index:
            return int(name)
        return self.index[name]


def folder_items(root: str, labels: list) -> tuple:
    """[(path, label index or -1)], note: DIR/<class>/* labelled by folder; files in DIR unlabelled."""
    classes = sorted(
        d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")
    )
    items = []
    for path in edgelib.list_images(root):
        if os.path.dirname(path) == root.rstrip(os.sep):
            items.append((path, None))
    lmap = LabelMap(labels, classes) if classes else None
    for cls in classes:
        files = edgelib.list_images(os.path.join(root, cls))
        if not files:
            edgelib.warn(f"class folder {os.path.join(root, cls)} has no images")
        items.extend((p, lmap(cls)) for p in files)
    if not items:
        raise edgelib.InputFailure(
            f"image folder {root} contains no images ({', '.join(edgelib.IMAGE_EXTENSIONS)})"
        )
    return [(p, -1 if y is None else y) for p, y in items], lmap.note if lmap else None


def csv_items(path: str, labels: list) -> tuple:
    base = os.path.dirname(os.path.abspath(path))
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.reader(f)):
                if not row or not row[0].strip() or row[0].startswith("#"):
                    continue
                if i == 0 and row[0].strip().lower() in ("path", "file", "filename", "image"):
                    continue  # header
                label = row[1].strip() if len(row) > 1 else ""
                rows.append((row[0].strip(), label))
    except (OSError, UnicodeDecodeError) as exc:
        raise edgelib.InputFailure(f"cannot read CSV {path}: {exc}") from None
    if not rows:
        raise edgelib.InputFailure(f"CSV {path} has no rows: write `path,label` lines")
    names = sorted({lab for _, lab in rows if lab and not lab.lstrip("-").isdigit()})
    lmap = LabelMap(labels, names) if names else None
    items = []
    for p, lab in rows:
        full = p if os.path.isabs(p) else os.path.join(base, p)
        if not lab:
            items.append((full, -1))
        elif lab.lstrip("-").isdigit():
            items.append((full, int(lab)))
        else:
            items.append((full, lmap(lab)))
    return items, lmap.note if lmap else None


def npz_data(path: str, ctx: edgelib.Context) -> tuple:
    """(inputs NHWC in the model's dtype, labels, names) from an .npz made by edgekit."""
    try:
        with np.load(path, allow_pickle=False) as z:
            x = z["x"]
            y = z["y"].astype(int) if "y" in z.files else np.full(len(x), -1)
            names = [str(p) for p in z["paths"]] if "paths" in z.files else [f"#{i}" for i in range(len(x))]
    except Exception as exc:
        raise edgelib.InputFailure(
            f"cannot read {path} as an edgekit .npz ({edgelib._one_line(exc)})"
        ) from None
    want = tuple(ctx.model.input_shape[1:])
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        raise edgelib.InputFailure(
            f"{path} holds inputs of shape {list(x.shape[1:])}; the model takes {list(want)}"
        )
    if x.dtype == np.float32 and ctx.model.input["dtype"] != np.float32:
        x = ctx.model.quantize_input(x)  # normalised floats -> the model's integer input
    elif x.dtype != ctx.model.input["dtype"]:
        raise edgelib.InputFailure(
            f"{path} holds {x.dtype} inputs; the model takes {ctx.model.input['dtype']}"
        )
    return x, y, names


# --------------------------------------------------------------------------- evaluation


def evaluate(args) -> dict:
    ctx = edgelib.open_model(args.model, threads=args.threads, labels_path=args.labels, runtime=args.runtime)
    labels = ctx.labels or [f"class_{i}" for i in range(ctx.num_classes)]
    data = args.data
    note = None
    npz = None
    if not os.path.exists(data):
        raise edgelib.InputFailure(f"--data {data} does not exist")
    if data.lower().endswith(".npz"):
        npz = npz_data(data, ctx)
        items = [(npz[2][i], int(npz[1][i])) for i in range(len(npz[2]))]
        kind = "npz"
    elif data.lower().endswith(".csv"):
        items, note = csv_items(data, labels)
        kind = "csv"
    elif os.path.isdir(data):
        items, note = folder_items(data, labels)
        kind = "folder"
    else:
        raise edgelib.UsageFailure(f"--data must be an image folder, a .csv or an .npz; received {data}")
    if args.limit:
        items = items[: args.limit]
    bad = [y for _, y in items if y >= ctx.num_classes]
    if bad:
        raise edgelib.InputFailure(
            f"label index {bad[0]} is out of range for a model with {ctx.num_classes} outputs"
        )

    model = ctx.model
    model.resize_batch(1)
    preds, skipped, lat, pre, hits5 = [], [], [], [], []
    not_finite = 0
    k = min(max(5, args.top_k), ctx.num_classes)
    step = max(1, len(items) // 10)
    for i, (path, y) in enumerate(items):
        if i % step == 0:
            edgelib.progress(f"eval {i}/{len(items)}")
        t0 = time.perf_counter()
        if npz is not None:
            x = npz[0][i : i + 1]
        else:
            try:
                x = edgelib.prepare_image(ctx, edgelib.decode_image(path))
            except edgelib.ImageReadError as exc:
                skipped.append({"path": path, "reason": str(exc)})
                continue
            except OSError as exc:
                skipped.append({"path": path, "reason": f"cannot read: {exc.strerror or exc}"})
                continue
        t1 = time.perf_counter()
        try:
            raw = model.invoke_raw(x)
        except Exception as exc:
            raise edgelib.ModelFailure(f"{args.model}: invoke failed ({edgelib._one_line(exc)})") from None
        t2 = time.perf_counter()
        scores = ctx.scores(raw)[0]
        if not np.all(np.isfinite(scores)):
            not_finite += 1
            continue
        top = edgelib.top_k(scores, k)
        pre.append(t1 - t0)
        lat.append(t2 - t1)
        hits5.append(int(y) in [j for j, _ in top[:5]])
        preds.append({"path": path, "label": int(y), "pred": top[0][0], "top": top[: args.top_k]})
    if not_finite:
        raise edgelib.ModelFailure(
            f"{args.model} outputs NaN or Inf on {not_finite} of {not_finite + len(preds)} images: its "
            "accuracy would mean nothing (the model is broken; re-export or retrain it)"
        )
    if not preds:
        raise edgelib.InputFailure(f"none of the {len(items)} images in {data} could be read")
    return _summary(ctx, args, kind, labels, preds, hits5, skipped, lat, pre, note)


def _summary(ctx, args, kind, labels, preds, hits5, skipped, lat, pre, note) -> dict:
    labelled = [p for p in preds if p["label"] >= 0]
    n = len(labelled)
    top1 = sum(p["pred"] == p["label"] for p in labelled)
    top5 = sum(hits5[i] for i, p in enumerate(preds) if p["label"] >= 0)
    per_class = {}
    for p in labelled:
        c = per_class.setdefault(labels[p["label"]], {"n": 0, "correct": 0})
        c["n"] += 1
        c["correct"] += int(p["pred"] == p["label"])
    for c in per_class.values():
        c["top1"] = c["correct"] / c["n"]
    return {
        "schema_version": edgelib.SCHEMA_VERSION,
        "kind": "eval",
        "model": ctx.model_info(),
        "runtime": ctx.runtime_info(),
        "environment": edgelib.environment(),
        "data": {
            "source": os.path.abspath(args.data),
            "kind": kind,
            "items": len(preds) + len(skipped),
            "note": note,
        },
        "labels": labels,
        "n": n,
        "top1": top1 / n if n else None,
        "top5": top5 / n if n else None,
        "per_class": per_class,
        "latency_ms": edgelib.percentiles_ms(lat),
        "preprocess_ms": edgelib.percentiles_ms(pre),
        "peak_rss_mb": edgelib.peak_rss_mb(),
        "predictions": preds,
        "skipped": skipped,
    }


def print_text(doc: dict) -> None:
    m = doc["model"]
    print(f"{m['file']} on {doc['data']['source']} ({doc['data']['kind']}, {doc['n']} labelled)")
    if doc["top1"] is not None:
        print(f"top-1 {doc['top1']:.2%}  top-5 {doc['top5']:.2%}")
    lat = doc["latency_ms"]
    print(f"latency p50 {lat['p50']:.3f} ms  p90 {lat['p90']:.3f} ms  (runtime {doc['runtime']['name']})")
    for s in doc["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}")


def main(argv=None) -> int:
    args = parse_args(argv)
    doc = evaluate(args)
    if args.json:
        edgelib.emit_json(doc)
    else:
        print_text(doc)
    return 0


if __name__ == "__main__":
    sys.exit(edgelib.run_main(main))
