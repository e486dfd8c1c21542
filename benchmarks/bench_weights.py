"""Issue 13 (weight sources): TF's int8 MobileNet v1 0.25/128 rebuilt as the zoo's float Keras model.

Runs the rebuilt model and the `.tflite` side by side on the real ants/bees photos in ../shared and
reports their top-1 agreement, plus each one's ImageNet top-1 for the `ant` / `bee` classes.

    python -m benchmarks.bench_weights
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks._common import ROOT, command_line, machine_line, write_section

SHARED = ROOT.parent / "shared"
TFLITE = SHARED / "models" / "mobilenet_v1_0.25_128_quant.tflite"
PHOTOS = SHARED / "datasets" / "ants-bees"


def main() -> None:
    from edgekit.data.datasets import decode, open_dataset
    from edgekit.pipeline.weights import tflite
    from edgekit.pipeline.weights.common import imagenet_labels

    if not TFLITE.is_file() or not PHOTOS.is_dir():
        raise SystemExit(f"needs {TFLITE} and {PHOTOS}")
    t0 = time.perf_counter()
    model, cfg, prep, _labels, info, tfl = tflite.rebuild(TFLITE)
    rebuild_s = time.perf_counter() - t0
    names = imagenet_labels(cfg.classes)
    ids = {"ants": names.index(next(n for n in names if n.startswith("ant,"))), "bees": names.index("bee")}
    rows = []
    for split in ("train", "val"):
        b = decode(open_dataset(PHOTOS / split), prep.to_dict())
        ref = tfl.predict(b.x).argmax(-1)
        out = np.asarray(model.predict(b.x, batch_size=32, verbose=0)).argmax(-1)
        y = np.array([ids[b.class_names[i]] for i in b.y])
        rows.append((split, len(b.x), np.mean(ref == out), np.mean(out == y), np.mean(ref == y)))
    n = sum(r[1] for r in rows)
    agree_all = sum(r[1] * r[2] for r in rows) / n
    lines = [
        "## Weight sources: a TF int8 `.tflite` rebuilt as the zoo model (issue 13)",
        "",
        f"`{command_line()}` — {machine_line()}",
        "",
        f"{TFLITE.name} ({info['weights_dtype']} {info['weights_quantization']} weights, input "
        f"{info['input_dtype']} scale {info['input_quantization'][0]:g} zero-point "
        f"{info['input_quantization'][1]}) → zoo MobileNet v1 α {cfg.alpha:g} at {cfg.resolution} px, "
        f"{cfg.classes} classes, rebuilt in {rebuild_s:.1f} s wall time (TensorFlow import included; a shared, busy machine).",
        "",
        "| ants/bees photos | images | top-1 agreement rebuilt vs .tflite | ImageNet ant/bee top-1: rebuilt | .tflite |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {s} | {k} | {a:.1%} | {r:.1%} | {t:.1%} |" for s, k, a, r, t in rows]
    lines += [
        "",
        f"Agreement over all {n} photos: {agree_all:.1%}. The ImageNet top-1 is low for both because most of "
        "these photos score as other insects; what matters is that the rebuilt float model and the int8 file "
        "agree. The issue's hand measurement on TF's 0.5/160 int8 model: 96 % agreement.",
    ]
    write_section("weights", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
