"""The desktop float reference on three Keras backends beside the host int8 .tflite and a device run.

One MobileNet v1 α 0.5 at 160 px (2 classes, random weights: latency does not depend on the values),
exported int8 and calibrated on the ants/bees photos in ../shared; then on the same validation photos:
`edgekit eval --backend tensorflow|torch|jax` (float reference: batch-1 latency, batch-64 throughput,
where it ran) and `edgekit eval --device local` (the device script, batch 1), whose `vs_reference` is
the comparison every device result carries. Writes its BENCHMARKS.md section.

    .venv/bin/python -m benchmarks.bench_reference [--limit 60] [--no-write]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._common import ROOT, command_line, machine_line, write_section

SECTION = "bench_reference"
SHARED = ROOT.parent / "shared" / "datasets" / "ants-bees"


def cli(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "edgekit", *args, "--json"], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"edgekit {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=60, help="validation photos evaluated")
    ap.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    a = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is missing: this benchmark needs the shared ants/bees photos")
    with tempfile.TemporaryDirectory(prefix="bench-ref-") as tmp:
        bundle, db = Path(tmp) / "bundle", str(Path(tmp) / "r.db")
        cli("export", "--model", "mobilenet", "--alpha", "0.5", "--resolution", "160", "--classes", "2",
            "--quantize", "int8", "--calibration", str(SHARED / "train"), "--calibration-samples", "64",
            "-o", str(bundle), "--db", db)  # fmt: skip
        data = ["--data", str(SHARED / "val"), "--limit", str(a.limit), "--db", db]
        rows = []
        desktop = cli("eval", str(bundle), *data)  # tensorflow: writes reference.json for the device run
        rows.append(("tensorflow", desktop))
        for backend in ("torch", "jax"):
            found = importlib.util.find_spec(backend) is not None
            rows.append((backend, cli("eval", str(bundle), *data, "--backend", backend, "--no-write") if found else None))
        dev = cli("eval", str(bundle), *data, "--device", "local")
    host, vs = desktop["tflite"], dev["vs_reference"]
    lines = [
        "## The desktop reference: float Keras on three backends, host int8, a device (issue 16)",
        "",
        f"Command: `{command_line()}`  ",
        machine_line() + "  ",
        f"MobileNet v1 α 0.5, 160 px, 2 classes (random weights), int8 calibrated on 64 ants/bees photos; "
        f"{desktop['data']['n']} validation photos. Latency per image at batch 1 (p50/p90 after 3 warm-up "
        "calls, ≥ 20 calls and ≥ 0.5 s); throughput at batch 64. Keras runs with each framework's default "
        "thread count; the host .tflite with all cores. No GPU here: every figure is CPU.",
        "",
        "| model | where | p50 ms | p90 ms | images/s at batch 64 |",
        "|---|---|---:|---:|---:|",
    ]
    for backend, r in rows:
        if r is None:
            lines.append(f"| float32 Keras/{backend} | not installed | – | – | – |")
            continue
        ref = r["reference"]
        lines.append(f"| float32 Keras/{backend} | {ref['device']['type']} {ref['device']['name']} | "
                     f"{ref['latency_ms']['p50']:.2f} | {ref['latency_ms']['p90']:.2f} | "
                     f"{ref['throughput']['images_per_s']:.0f} |")  # fmt: skip
    thr = host.get("throughput") or {}
    ips = f"{thr['images_per_s']:.0f}" if thr.get("images_per_s") else "–"
    lines.append(f"| int8 host .tflite ({host['runtime']}, {host['threads']} threads) | CPU | "
                 f"{host['latency_ms']['p50']:.2f} | {host['latency_ms']['p90']:.2f} | {ips} |")  # fmt: skip
    lines.append(f"| int8 `eval --device local` ({dev['tflite']['runtime']['name']}, 1 thread) | CPU | "
                 f"{dev['tflite']['latency_ms']['p50']:.2f} | {dev['tflite']['latency_ms']['p90']:.2f} | – |")  # fmt: skip
    from edgekit.results.comparison import Comparison

    lines += ["", "The device result's comparison: " + Comparison.from_dict(vs).sentence("`local`") + ".", "",
              "`scripts/gpu_reference.sh` (Keras on torch/jax on an NVIDIA GPU) has not been run on a GPU: "
              "no GPU machine was available. Its logic is tested on the CPU "
              "(`tests/train/test_reference_speed.py::test_gpu_reference_script_on_cpu`)."]  # fmt: skip
    body = "\n".join(lines)
    print(body)
    if not a.no_write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
