#!/usr/bin/env python3
"""Batch latency profiling of a `.tflite` on this machine (runs on the device as it is).

    python3 profile_latency.py --model model.tflite [--threads 1,2,4] [--batch 1,4] [--warmup 5]
        [--runs 50] [--min-seconds 1] [--input random|zeros|DIR] [--no-xnnpack] [--json]

Needs Python 3.9+, numpy and one TFLite interpreter (+ OpenCV or Pillow for --input DIR); the JSON
document it prints with --json is described in README.md next to this file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import edgelib
import numpy as np

DRIFT_RATIO = 1.10  # last third 10% slower than the first third: likely thermal throttling
CONTENDED = 0.8  # one thread busy less than 80 % of the wall time: the CPU was shared
DRIFT_MIN_S = 2.0  # shorter runs are too brief to heat a CPU; their jitter is not drift


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Latency of a .tflite per thread count and batch size.")
    p.add_argument("--model", required=True, help="the .tflite file")
    p.add_argument("--threads", default="1", help="comma list, e.g. 1,2,4")
    p.add_argument("--batch", default="1", help="comma list of batch sizes (resizes the input)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs before timing")
    p.add_argument("--runs", type=int, default=50, help="at least this many timed runs")
    p.add_argument("--min-seconds", type=float, default=1.0, help="and time for at least this long")
    p.add_argument("--max-runs", type=int, default=100000,
                   help="stop --min-seconds after this many timed runs (never fewer than --runs)")  # fmt: skip
    p.add_argument("--input", default="random", help="random | zeros | a folder of images")
    p.add_argument("--runtime", default=None, choices=edgelib.RUNTIMES, help="force one interpreter")
    p.add_argument("--no-xnnpack", action="store_true", help="plain TFLite kernels, no XNNPACK")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = p.parse_args(argv)
    args.threads = _int_list(p, args.threads, "--threads")
    args.batch = _int_list(p, args.batch, "--batch")
    for name in ("warmup", "runs", "max_runs"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            p.error(f"--{name.replace('_', '-')} must be {'>= 0' if name == 'warmup' else '>= 1'}")
    if args.min_seconds < 0:
        p.error("--min-seconds must be >= 0")
    args.max_runs = max(args.max_runs, args.runs)  # --runs promises at least that many
    return args


def _int_list(p: argparse.ArgumentParser, text: str, name: str) -> list:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        p.error(f"{name} must be positive integers separated by commas; received {text!r}")
    return list(dict.fromkeys(values))


def load_images(ctx: edgelib.Context, folder: str, limit: int = 64) -> np.ndarray:
    """Up to `limit` real images from a folder, preprocessed and quantized like real input."""
    if not os.path.isdir(folder):
        raise edgelib.UsageFailure(f"--input must be random, zeros or an image folder; received {folder!r}")
    paths = edgelib.list_images(folder)[:limit]
    if not paths:
        raise edgelib.InputFailure(f"--input folder {folder} contains no images")
    out = []
    for path in paths:
        try:
            out.append(edgelib.prepare_image(ctx, edgelib.decode_image(path))[0])
        except edgelib.ImageReadError as exc:
            edgelib.warn(f"skipped {exc}")
    if not out:
        raise edgelib.InputFailure(f"none of the images in {folder} could be decoded")
    return np.stack(out)


def batches_from(images, model: edgelib.Model, kind: str, batch: int) -> list:
    """Input batches to cycle through: one synthetic batch, or consecutive real images."""
    if images is None:
        return [edgelib.make_batch(model, kind, batch)]
    reps = int(np.ceil(batch / len(images)))
    pool = np.concatenate([images] * max(1, reps)) if reps > 1 else images
    n = max(1, len(pool) // batch)
    return [pool[i * batch : (i + 1) * batch].astype(model.input["dtype"]) for i in range(n)]


def timed_loop(interp, index: int, batches: list, runs: int, min_seconds: float, max_runs: int) -> list:
    """Seconds per invoke. Only invoke() sits between the clock reads, as in LiteRT's own benchmark;
    a new input (when there are several) is set outside the timed region."""
    perf = time.perf_counter
    invoke = interp.invoke
    samples = []
    append = samples.append
    start = perf()
    n = 0
    nb = len(batches)
    while True:
        if nb > 1:
            interp.set_tensor(index, batches[n % nb])
        t0 = perf()
        invoke()
        append(perf() - t0)
        n += 1
        if n >= max_runs or (n >= runs and perf() - start >= min_seconds):
            return samples


def latency_trend(samples: list) -> dict:
    """Median of the last third vs the first third: upward drift hints at thermal throttling."""
    if len(samples) < 30:
        return {"ratio": None}
    third = len(samples) // 3
    first = float(np.median(samples[:third]))
    last = float(np.median(samples[-third:]))
    return {
        "first_third_p50_ms": first * 1000,
        "last_third_p50_ms": last * 1000,
        "ratio": last / first if first > 0 else None,
    }


def profile_one(ctx: edgelib.Context, threads: int, batch: int, images, args) -> dict:
    row = {"threads": threads, "batch": batch}
    t0 = time.perf_counter()
    model = ctx.reload(threads=threads)
    init_ms = (time.perf_counter() - t0) * 1000
    try:
        model.resize_batch(batch)
        if int(model.output["shape"][0]) != batch:
            raise ValueError(f"output batch stays {int(model.output['shape'][0])}")
        data = batches_from(images, model, args.input, batch)
        model.interpreter.set_tensor(model.input["index"], data[0])
        t0 = time.perf_counter()
        model.interpreter.invoke()
        first_ms = (time.perf_counter() - t0) * 1000
    except Exception as exc:
        if batch == ctx.model.input_shape[0]:
            raise edgelib.ModelFailure(f"{ctx.path}: invoke failed ({edgelib._one_line(exc)})") from None
        sig = ctx.model.input.get("shape_signature")
        return {
            **row,
            "supported": False,
            "error": (
                f"this model cannot take batch {batch} (input shape signature "
                f"{[int(d) for d in sig] if sig is not None else '?'}): {edgelib._one_line(exc)}"
            ),
        }
    for _ in range(args.warmup):
        model.interpreter.invoke()
    cpu0, wall0 = time.process_time(), time.perf_counter()  # read once around the loop: no per-run cost
    samples = timed_loop(
        model.interpreter, model.input["index"], data, args.runs, args.min_seconds, args.max_runs
    )
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    per_batch = edgelib.percentiles_ms(samples)
    per_image = {k: v / batch for k, v in per_batch.items()}
    total = float(np.sum(samples))
    trend = latency_trend(samples)
    row.update(
        {
            "supported": True,
            "init_ms": init_ms,
            "first_inference_ms": first_ms,
            "warmup": args.warmup,
            "runs": len(samples),
            "duration_s": total,
            "latency_ms": per_batch,
            "latency_per_image_ms": per_image,
            "images_per_s": batch * len(samples) / total if total > 0 else None,
            "cpu_ms_per_run": cpu_s * 1000 / len(samples),
            # CPU time of all threads over wall time: ~threads when the cores were ours, far less when
            # other processes competed for them (latency then includes waiting for a core)
            "cpu_utilisation": cpu_s / wall_s if wall_s > 0 else None,
            "peak_rss_mb": edgelib.peak_rss_mb(),
            "rss_mb": edgelib.rss_mb(),
            "latency_trend": trend,
            "drift_flag": bool(
                trend["ratio"] is not None and trend["ratio"] > DRIFT_RATIO and total >= DRIFT_MIN_S
            ),
        }
    )
    return row


def run(args) -> dict:
    ctx = edgelib.open_model(args.model, runtime=args.runtime, xnnpack=not args.no_xnnpack)
    images = None
    if args.input not in ("random", "zeros"):
        images = load_images(ctx, args.input)
    env_before = edgelib.environment()
    rows, warnings = [], []
    configs = [(t, b) for t in args.threads for b in args.batch]
    for i, (threads, batch) in enumerate(configs, 1):
        edgelib.progress(f"[{i}/{len(configs)}] threads={threads} batch={batch}")
        row = profile_one(ctx, threads, batch, images, args)
        if not row["supported"]:
            warnings.append(row["error"])
            edgelib.warn(row["error"])
        elif threads == 1 and row["cpu_utilisation"] is not None and row["cpu_utilisation"] < CONTENDED:
            msg = (
                f"threads=1 batch={batch}: the process ran only {row['cpu_utilisation']:.0%} of the time: other "
                "processes competed for the CPU, so latencies include waiting for a core"
            )
            warnings.append(msg)
            edgelib.warn(msg)
        elif row["drift_flag"]:
            msg = (
                f"threads={threads} batch={batch}: latency drifted up {row['latency_trend']['ratio']:.2f}x during "
                "the run (thermal throttling?): check cooling and the governor"
            )
            warnings.append(msg)
            edgelib.warn(msg)
        rows.append(row)
    return {
        "schema_version": edgelib.SCHEMA_VERSION,
        "kind": "profile",
        "model": ctx.model_info(),
        "runtime": {**ctx.runtime_info(), "threads": None},
        "settings": {
            "threads": args.threads,
            "batch": args.batch,
            "warmup": args.warmup,
            "runs": args.runs,
            "min_seconds": args.min_seconds,
            "input": args.input if images is None else "images",
            "images": None if images is None else int(len(images)),
        },
        "environment": env_before,
        "environment_after": edgelib.thermal_state(),
        "int8_note": edgelib.int8_speed_note(env_before["cpu"]),
        "configurations": rows,
        "warnings": warnings,
    }


def print_text(doc: dict) -> None:
    m, rt = doc["model"], doc["runtime"]
    print(
        f"{m['file']} ({m['precision']}, {m['size_bytes'] / 1e6:.2f} MB) on {doc['environment']['cpu']['model']}"
    )
    print(f"runtime {rt['name']} {rt['version']}, XNNPACK {'on' if rt['xnnpack'] else 'off'}")
    print(
        f"{'threads':>7} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'img/s':>9} {'init ms':>8}"
    )
    for r in doc["configurations"]:
        if not r["supported"]:
            print(f"{r['threads']:>7} {r['batch']:>5}  not supported: {r['error']}")
            continue
        lat = r["latency_ms"]
        print(
            f"{r['threads']:>7} {r['batch']:>5} {lat['p50']:>9.3f} {lat['p90']:>9.3f} {lat['p99']:>9.3f} "
            f"{r['images_per_s']:>9.1f} {r['init_ms']:>8.1f}"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    doc = run(args)
    if args.json:
        edgelib.emit_json(doc)
    else:
        print_text(doc)
    return 0


if __name__ == "__main__":
    sys.exit(edgelib.run_main(main))
