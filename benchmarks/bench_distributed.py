"""One worker vs two local workers (MultiWorkerMirroredStrategy on 127.0.0.1), same global batch:
images/s and validation top-1. Writes the `distributed` section of BENCHMARKS.md.

On a 2-core machine two workers share the cores one worker already uses, so this shows that the
distributed path runs and converges like one worker, not a speed-up; on two hosts (or two GPUs) each
worker brings its own compute.

    .venv/bin/python -m benchmarks.bench_distributed [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._common import command_line, machine_line, write_section


def _train(out: Path, batch: int, epochs: int, workers: int | None) -> dict:
    args = ["train", "--model", "resnet18", "--resolution", "32", "--data", "builtin:digits", "--epochs",
            str(epochs), "--batch-size", str(batch), "--patience", "0", "--seed", "0", "-o", str(out)]  # fmt: skip
    if workers:
        args += ["--workers", str(workers)]
    env = {**os.environ, "EDGEKIT_WORKER_DIR": str(out.parent / "backup")}
    subprocess.run([sys.executable, "-m", "edgekit", *args], env=env, check=True, capture_output=True)
    return json.loads((out / "run.json").read_text())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    one = _train(work / "one", 32, args.epochs, None)
    two = _train(work / "two", 16, args.epochs, 2)
    rows = []
    for name, r in (("1 worker, batch 32", one), ("2 workers × 16 (global 32)", two)):
        t = r["training"]
        rows.append(f"| {name} | {t['images_per_s']:.0f} | {t['seconds']:.0f} s | {r['evaluation']['top1']:.1%} |")
    ratio = two["training"]["images_per_s"] / one["training"]["images_per_s"]
    body = f"""## Training on two workers (`python -m benchmarks.bench_distributed`)

{machine_line()}. Command: `{command_line()}`. ResNet-18 at 32 px on builtin:digits (1,438 train /
359 validation images), {args.epochs} epochs, seed 0, the same global batch; two workers are two
processes on 127.0.0.1 (MultiWorkerMirroredStrategy, gRPC collectives). One run each, taken in one go.

| run | images/s | training time | validation top-1 |
|---|---:|---:|---:|
{chr(10).join(rows)}

Two workers ÷ one: {ratio:.2f}× the images/s. Both workers share this machine's {os.cpu_count()}
cores, so the point is that the distributed path runs and converges to the accuracy of one worker,
not a speed-up; on separate hosts or GPUs each worker adds its own compute.
"""
    write_section("distributed", body)
    print(body)


if __name__ == "__main__":
    main()
