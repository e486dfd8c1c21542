"""Latency-only α × resolution sweep of MobileNet v1 on this machine, timed end to end.

    python -m benchmarks.bench_sweep [--alpha 0.25,0.5,0.75,1.0] [--resolution 128,160,192,224]
        [--threads 1] [--runs 50] [--min-seconds 1] [--no-write]

Runs `edgekit sweep --latency-only` as a user would (a fresh results database and output folder),
then writes the paper's Tables 6-7 shape with this CPU's own milliseconds to BENCHMARKS.md, with
MACs and params beside them (and the MobileNet paper's MACs for the standard variants, as a check of
the model zoo), and how long the whole sweep took. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import ROOT, command_line, machine_line, write_section

SECTION = "bench_sweep"
# MobileNet v1 paper (Howard et al. 2017), Tables 6 and 7: million mult-adds, 1000 ImageNet classes.
PAPER_MACS = {(1.0, 224): 569, (0.75, 224): 325, (0.5, 224): 149, (0.25, 224): 41,
              (1.0, 192): 418, (1.0, 160): 290, (1.0, 128): 186}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alpha", default="0.25,0.5,0.75,1.0")
    p.add_argument("--resolution", default="128,160,192,224")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = p.parse_args(argv)

    # A fresh folder, removed only on success: after a failure the database shows what was measured.
    tmp = tempfile.mkdtemp(prefix="bench_sweep-")
    cmd = [
        sys.executable, "-m", "edgekit", "sweep", "--latency-only", "--alpha", args.alpha,
        "--resolution", args.resolution, "--threads", str(args.threads), "--runs", str(args.runs),
        "--min-seconds", str(args.min_seconds), "-o", str(Path(tmp) / "out"), "--db", str(Path(tmp) / "r.db"),
        "--json",
    ]  # fmt: skip
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:] + f"\nkept for inspection: {tmp}\n")
        return proc.returncode
    summary = json.loads(proc.stdout)
    interp, mins = _from_db(Path(tmp) / "r.db")
    t0 = time.perf_counter()  # the same command again: everything is recorded, nothing is redone
    again = json.loads(subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True).stdout)
    rerun = (time.perf_counter() - t0, again["skipped"])
    shutil.rmtree(tmp, ignore_errors=True)
    body = render(summary, args, wall, load_before, load_after, interp, mins, rerun)
    print(body)
    if not args.no_write:
        write_section(SECTION, body)
    return 0


def _from_db(db: Path) -> tuple[str, dict]:
    """The interpreter, and the fastest single run per model (robust to other work sharing the CPU)."""
    import sqlite3

    with sqlite3.connect(db) as c:
        row = c.execute(
            "SELECT interpreter, interpreter_version FROM runs WHERE kind = 'profile' LIMIT 1"
        ).fetchone()
        mins = dict(
            c.execute(
                "SELECT r.model_name, MIN(m.min_ms) FROM runs r JOIN measurements m ON m.run_id = r.id "
                "WHERE r.kind = 'profile' GROUP BY r.model_name"
            ).fetchall()
        )
    return (" ".join(x for x in row if x) if row else "unknown"), mins


def render(s: dict, args, wall: float, load_before, load_after, interp: str, mins: dict, rerun) -> str:
    cells = {(g["alpha"], g["resolution"]): {**g, "min_ms": mins.get(g["model"])} for g in s["grid"]}
    alphas, res = sorted({a for a, _ in cells}), sorted({r for _, r in cells})
    head = "| α \\ input | " + " | ".join(f"{r} px (ρ={r / 224:.3g})" for r in res) + " |"
    sep = "|---|" + "---:|" * len(res)
    lat = [head, sep]
    fast = [head, sep]
    macs = [head, sep]
    for a in alphas:
        lat.append(f"| {a:g} | " + " | ".join(_ms(cells.get((a, r))) for r in res) + " |")
        fast.append(f"| {a:g} | " + " | ".join(_ms(cells.get((a, r)), "min_ms") for r in res) + " |")
        macs.append(f"| {a:g} | " + " | ".join(_macs(cells.get((a, r)), a, r) for r in res) + " |")
    params = " · ".join(
        f"α {a:g}: {next(g['params'] for (aa, _), g in cells.items() if aa == a) / 1e6:.2f}M" for a in alphas
    )
    sizes = " · ".join(
        f"α {a:g}: {next(g['size_bytes'] for (aa, _), g in cells.items() if aa == a) / 1e6:.2f} MB"
        for a in alphas
    )
    ratio = _per_mac(cells)
    steps = sorted(st["seconds"] for st in s["steps"])
    return "\n".join(
        [
            "## α × resolution sweep, latency only (issue 6)",
            "",
            f"Command: `{command_line()}` (runs `edgekit sweep --latency-only`, a fresh database)  ",
            f"{machine_line()}  ",
            f"Interpreter: {interp}, threads {args.threads}, batch 1, int8 (per-channel, int8 input/output), "
            f"at least {args.runs} timed runs and {args.min_seconds:g} s per configuration "
            "(`profile_latency.py` through the local target). Random weights, 1000 classes: latency does not "
            "depend on the weights' values.  ",
            f"Load average (1/5/15 min): {'/'.join(f'{x:.1f}' for x in load_before)} at the start, "
            f"{'/'.join(f'{x:.1f}' for x in load_after)} at the end (a shared machine: other work ran "
            "beside this one, so single cells can be off by tens of percent; compare shapes, not digits).",
            "",
            "**p50 latency (ms) per image**",
            "",
            *lat,
            "",
            "**Fastest single run (ms)**: the least disturbed by other work on the machine, so the closest to "
            "what an idle CPU does",
            "",
            *fast,
            "",
            "**Million multiply-accumulates** (this zoo's count; the paper's Table 6/7 figure in brackets where "
            "it lists the variant)",
            "",
            *macs,
            "",
            f"Params: {params}. int8 file size: {sizes}.",
            "",
            ratio,
            "",
            f"**Sweep time:** {wall:.0f} s for {len(s['grid'])} configurations end to end (build, calibrate, "
            f"convert to float32 for the size ratio and to int8, verify, write the bundle, profile, record); "
            f"per configuration {steps[0]:.0f}–{steps[-1]:.0f} s, median {steps[len(steps) // 2]:.0f} s. "
            f"Re-running the same command skipped {rerun[1]} of {len(s['grid'])} configurations (resumable) and "
            f"took {rerun[0]:.1f} s.",
        ]
    )


def _ms(g: dict | None, key: str = "latency_ms") -> str:
    return "–" if not g or g.get(key) is None else f"{g[key]:.2f}"


def _macs(g: dict | None, a: float, r: int) -> str:
    if not g or not g.get("macs"):
        return "–"
    paper = PAPER_MACS.get((a, r))
    return f"{g['macs'] / 1e6:.0f}" + (f" [{paper}]" if paper else "")


def _per_mac(cells: dict) -> str:
    """How well MACs predict latency here: ns per MAC, smallest vs largest model of the grid."""
    gs = sorted((g for g in cells.values() if g.get("macs") and g.get("latency_ms")), key=lambda g: g["macs"])
    if len(gs) < 2:
        return ""
    ns = [(g.get("min_ms") or g["latency_ms"]) * 1e6 / g["macs"] for g in gs]
    small, large = ns[0], ns[-1]
    verdict = (
        "the smallest model pays more time per MAC than the largest (fixed per-layer and per-invoke costs), so "
        "MACs understate its latency"
        if small > large * 1.2
        else "the smallest and the largest model cost about the same time per MAC"
        if small >= large / 1.2
        else "the largest model pays more time per MAC than the smallest (memory traffic)"
    )
    return (
        f"Time per MAC (fastest run): {small:.3f} ns for {gs[0]['model']} ({gs[0]['macs'] / 1e6:.0f}M MACs) vs {large:.3f} ns "
        f"for {gs[-1]['model']} ({gs[-1]['macs'] / 1e6:.0f}M): {verdict}."
    )


if __name__ == "__main__":
    sys.exit(main())
