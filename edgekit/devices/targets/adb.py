"""Android over adb: push a model and run LiteRT's `benchmark_model` on the phone, parse its output.

What a phone needs (see the README's Android section):
  * USB debugging on, this computer authorised (`adb devices` lists the serial as "device");
  * for profiling: the `benchmark_model` binary for the phone's ABI (arm64-v8a for nearly every
    phone since 2017), pushed once: `adb push benchmark_model /data/local/tmp/ && adb shell chmod +x
    /data/local/tmp/benchmark_model`, and its path in the device entry (`--benchmark-model`);
  * for eval/camera (the Python device scripts) on a phone: Termux. adb's shell user cannot run
    Termux's Python, so register the phone as an SSH device instead: in Termux `pkg install
    openssh python python-numpy`, `sshd` (port 8022), then `edgekit devices add phone --ssh
    USER@PHONE_IP:8022` and `edgekit devices setup phone` (see the README).

The adb binary: the device entry's `adb` option, else `adb` on PATH, else the one bundled with the
`adbutils` package. Not tested against a phone here: the tests cover command construction and the
parsing of recorded real `benchmark_model` output.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from edgekit.devices.targets.base import CommandResult, Target
from edgekit.errors import DependencyError, DeviceError

DEFAULT_WORKDIR = "/data/local/tmp/edgekit"  # writable by the shell user without root


def find_adb(configured: str | None = None) -> str:
    if configured:
        if not Path(configured).expanduser().is_file():
            raise DependencyError(f"adb binary {configured} (from the device entry) does not exist")
        return str(Path(configured).expanduser())
    found = shutil.which("adb")
    if found:
        return found
    try:
        import adbutils  # noqa: PLC0415

        return adbutils.adb_path()
    except Exception:
        raise DependencyError(
            "no adb binary found",
            hint="install Android platform-tools (apt install adb) or pip install adbutils",
        ) from None


class ADBTarget(Target):
    """An Android device addressed by its adb serial."""

    def adb_argv(self, *args: str) -> list[str]:
        return [find_adb(self.spec.options.get("adb")), "-s", self.spec.address, *args]

    def shell_argv(self, argv: list[str]) -> list[str]:
        """`adb shell` joins its arguments into one line for the phone's sh, so quote exactly once."""
        return self.adb_argv("shell", shlex.join(argv))

    def _call(self, argv: list[str], *, timeout: float | None, stream: Callable[[str], None] | None = None):
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise DeviceError(f"cannot start adb for {self.name}: {exc}") from None
        err: list[str] = []

        def read_err():
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace")
                err.append(line)
                if stream:
                    stream(line.rstrip("\n"))

        t = threading.Thread(target=read_err, daemon=True)
        t.start()
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise DeviceError(f"adb command on {self.name} did not finish within {timeout:g} s") from None
        t.join(timeout=5)
        stderr = "".join(err)
        if proc.returncode != 0 and re.search(
            r"device '.*' not found|no devices/emulators|unauthorized|offline", stderr
        ):
            raise DeviceError(
                f"android device {self.spec.address!r} ({self.name}) is not available: {stderr.strip()}",
                hint="check `adb devices`: the phone must be listed as 'device' (USB debugging authorised)",
            )
        return CommandResult(proc.returncode, out.decode("utf-8", "replace"), stderr)

    def run(self, argv: list[str], *, timeout: float | None = None, stream=None) -> CommandResult:
        return self._call(self.shell_argv(argv), timeout=timeout, stream=stream)

    def push(self, local_path: str, remote_path: str) -> None:
        res = self._call(self.adb_argv("push", str(local_path), remote_path), timeout=600)
        if res.returncode != 0:
            raise DeviceError(f"adb push to {self.name}:{remote_path} failed: {res.stderr.strip()}")

    def pull(self, remote_path: str, local_path: str) -> None:
        res = self._call(self.adb_argv("pull", remote_path, str(local_path)), timeout=600)
        if res.returncode != 0:
            raise DeviceError(f"adb pull of {self.name}:{remote_path} failed: {res.stderr.strip()}")

    def exists(self, remote_path: str) -> bool:
        return self.run(["test", "-e", remote_path], timeout=60).returncode == 0


# --------------------------------------------------------------------------- benchmark_model


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


def print_benchmark(docs: list[dict]) -> None:
    """A short table of benchmark_model results (mean latency: the tool prints no percentiles)."""
    from edgekit.cli.output import console  # noqa: PLC0415

    c = console()
    for d in docs:
        dev = d["device"]["name"]
        for r in d["configurations"]:
            mem = r.get("memory_mb") or {}
            c.print(
                f"{dev}: {d['model']['file']} ({d['model'].get('precision') or '?'}) threads={r['threads']}: "
                f"mean {r['latency_ms']['mean']:.3f} ms (min {r['latency_ms']['min']:.3f}, "
                f"std {r['latency_ms']['std']:.3f}), {r['images_per_s']:.1f} img/s, init {r['init_ms']:.1f} ms"
                + (f", memory {mem['kind']} {mem['overall']:.1f} MB" if mem else "")
                + " [benchmark_model]"
            )
