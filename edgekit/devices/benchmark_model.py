"""Profiling an Android phone with LiteRT's own `benchmark_model` (over adb), and reading its output.

The adb target only moves files and runs commands; this job builds the command line and turns the
tool's text into a profile-like document.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from edgekit.devices.targets.adb import DEFAULT_WORKDIR, ADBTarget
from edgekit.errors import DeviceError


def benchmark_argv(
    binary: str,
    model: str,
    *,
    threads: int = 1,
    runs: int = 50,
    warmup_runs: int = 5,
    min_seconds: float = 1.0,
    xnnpack: bool = True,
) -> list[str]:
    """benchmark_model's flags (names as in LiteRT's tools/benchmark/README) for one setting."""
    return [
        binary,
        f"--graph={model}",
        f"--num_threads={threads}",
        f"--num_runs={runs}",
        f"--min_secs={min_seconds:g}",
        f"--warmup_runs={warmup_runs}",
        f"--use_xnnpack={'true' if xnnpack else 'false'}",
        "--report_peak_memory_footprint=true",
    ]



_RUN_RE = re.compile(
    r"count=(?P<count>\d+) first=(?P<first>[\d.]+) curr=[\d.]+ min=(?P<min>[\d.]+) max=(?P<max>[\d.]+) "
    r"avg=(?P<avg>[\d.e+]+) std=(?P<std>[\d.]+)"
)



def parse_benchmark_output(text: str) -> dict:
    """The figures `benchmark_model` prints (times in µs there) -> a dict in ms and MB.

    The last `count=...` line is the timed phase; the one before it the warm-up.
    """
    runs = [m.groupdict() for m in _RUN_RE.finditer(text)]
    summary = re.search(r"Inference timings in us: (.*)", text)
    if not runs or not summary:
        last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or ["no output"]
        raise DeviceError(f"benchmark_model printed no timings: {last[0][:200]}")
    fields = dict(
        (k.strip(), float(v)) for k, v in re.findall(r"([A-Za-z ()]+): ([\d.e+]+)", summary.group(1))
    )
    timed = runs[-1]
    out: dict = {
        "count": int(timed["count"]),
        "latency_ms": {
            "mean": float(timed["avg"]) / 1000,
            "min": float(timed["min"]) / 1000,
            "max": float(timed["max"]) / 1000,
            "std": float(timed["std"]) / 1000,
            "p50": None,  # benchmark_model prints no percentiles; the device scripts do
            "p90": None,
            "p99": None,
        },
        "init_ms": fields.get("Init", 0.0) / 1000,
        "first_inference_ms": fields["First inference"] / 1000 if "First inference" in fields else None,
        "warmup_avg_ms": fields["Warmup (avg)"] / 1000 if "Warmup (avg)" in fields else None,
        "warmup_count": int(runs[0]["count"]) if len(runs) > 1 else None,
    }
    m = re.search(r"Num threads: \[(\d+)\]", text)
    out["threads"] = int(m.group(1)) if m else None
    m = re.search(r"Graph: \[(.*?)\]", text)
    out["graph"] = m.group(1) if m else None
    m = re.search(r"The input model file size \(MB\): ([\d.]+)", text)
    out["model_size_mb"] = float(m.group(1)) if m else None
    m = re.search(
        r"(Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): "
        r"init=([\d.]+) overall=([\d.]+)",
        text,
    )
    out["memory_mb"] = (
        {
            "kind": "peak" if m.group(1).startswith("Peak") else "delta",
            "init": float(m.group(2)),
            "overall": float(m.group(3)),
        }
        if m
        else None
    )
    out["xnnpack"] = "XNNPACK delegate" in text
    return out



def to_configuration(parsed: dict, batch: int = 1) -> dict:
    """One profile configuration row (the shape profile_latency.py reports) from parsed output."""
    mean = parsed["latency_ms"]["mean"]
    mem = parsed.get("memory_mb") or {}
    return {
        "threads": parsed["threads"],
        "batch": batch,
        "supported": True,
        "latency_ms": parsed["latency_ms"],
        "images_per_s": batch * 1000.0 / mean if mean else None,
        "init_ms": parsed["init_ms"],
        "runs": parsed["count"],
        "peak_rss_mb": mem.get("overall") if mem.get("kind") == "peak" else None,
        "memory_mb": mem or None,
        "source": "benchmark_model",
    }



def profile_with_benchmark_model(
    target: ADBTarget,
    model_path: str | Path,
    *,
    threads: tuple[int, ...] = (1,),
    runs: int = 50,
    warmup: int = 5,
    min_seconds: float = 1.0,
    xnnpack: bool = True,
    precision: str | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict:
    """Push the model and run benchmark_model once per thread count; a profile-like document."""
    binary = target.spec.options.get("benchmark_model")
    if not binary:
        raise DeviceError(
            f"device {target.name!r} has no benchmark_model path",
            hint=f"edgekit devices add {target.name} --adb SERIAL --benchmark-model /data/local/tmp/benchmark_model "
            "--replace",
        )
    model_path = Path(model_path)
    workdir = target.spec.workdir or DEFAULT_WORKDIR
    remote = f"{workdir}/{model_path.name}"
    target.run(["mkdir", "-p", workdir], timeout=60)
    progress(f"pushing {model_path.name}")
    target.push(str(model_path), remote)
    configs = []
    for t in threads:
        progress(f"benchmark_model threads={t}")
        res = target.run(
            benchmark_argv(
                binary,
                remote,
                threads=t,
                runs=runs,
                warmup_runs=warmup,
                min_seconds=min_seconds,
                xnnpack=xnnpack,
            ),
            timeout=900,
        )
        text = res.stdout + "\n" + res.stderr  # the tool logs to both, depending on the build
        if res.returncode != 0:
            raise DeviceError(f"benchmark_model failed on {target.name}: {text.strip().splitlines()[-1:]}")
        parsed = parse_benchmark_output(text)
        parsed["threads"] = parsed["threads"] or t
        configs.append(to_configuration(parsed))
    return {
        "schema_version": 1,
        "model": {"file": model_path.name, "precision": precision, "size_bytes": model_path.stat().st_size},
        "runtime": {"name": "benchmark_model", "version": None, "xnnpack": xnnpack},
        "configurations": configs,
        "device": target.describe(),
    }
