"""The machine a script runs on: CPU, SIMD, emulation, memory, temperature, throttling.

Part of edgelib (see its docstring): numpy and the standard library only; never edgekit.
"""

from __future__ import annotations

import glob
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # siblings, as on the device



# --------------------------------------------------------------------------- the machine


def parse_cpuinfo(text: str) -> tuple[str, set]:
    """(model name, feature flags) from the text of /proc/cpuinfo (x86 `flags`, ARM `Features`)."""
    flags: set[str] = set()
    model = ""
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features"):
            flags.update(val.split())
        elif key in ("model name", "hardware", "cpu model") and not model:
            model = val.strip()
        elif key == "model" and not model and not val.strip().isdigit():
            model = val.strip()  # Raspberry Pi: "Model : Raspberry Pi 4 Model B Rev 1.4"
    return model, flags


def simd_features(flags, machine: str) -> dict:
    """The SIMD features that decide int8 vs float speed."""
    return {
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx_vnni": "avx_vnni" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "amx_int8": "amx_int8" in flags,
        "neon": "neon" in flags or "asimd" in flags or machine in ("aarch64", "arm64"),
        "dotprod": "asimddp" in flags,
        "i8mm": "i8mm" in flags,
    }


def _processors(cpuinfo: str) -> int:
    return max(1, sum(1 for ln in cpuinfo.splitlines() if ln.partition(":")[0].strip() == "processor"))


def cpu_info(cpuinfo: str | None = None, machine: str | None = None) -> dict:
    """CPU model, cores and the SIMD features that decide int8 vs float speed.

    By default this machine's; `cpuinfo` (the text of a /proc/cpuinfo) and `machine` (its
    platform.machine()) describe a recorded CPU instead, as the tests do.
    """
    here = cpuinfo is None
    if here:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    machine = machine or platform.machine()
    model, flags = parse_cpuinfo(cpuinfo)
    if here:
        model = platform.processor() or model
    if here and not model:
        try:  # Raspberry Pi and other device-tree boards
            with open("/proc/device-tree/model", encoding="utf-8", errors="replace") as f:
                model = f.read().strip("\x00\n ")
        except OSError:
            model = machine
    emulated = emulation(machine, flags) if here else None
    if emulated:  # shown wherever the CPU is (CLI, database, reports): the timings are not a device's
        model = f"{model} [emulated {emulated}: latency not meaningful]"
    return {
        "model": model or machine,
        "machine": machine,
        "cores": (os.cpu_count() or 1) if here else _processors(cpuinfo),
        "simd": simd_features(flags, machine),
        "emulated": emulated,
    }


def emulation(machine: str, cpu_flags) -> str | None:
    """What emulates this CPU (qemu-user), or None on real hardware.

    edgekit's qemu wrapper says so in EDGEKIT_EMULATED; otherwise qemu-user (before 8.2) shows the
    host's /proc/cpuinfo, so x86 flags under an ARM Python (or the reverse) give it away.
    """
    label = os.environ.get("EDGEKIT_EMULATED", "").strip()
    if label:
        return label
    arm = machine.startswith(("aarch64", "arm"))
    x86 = machine in ("x86_64", "amd64", "i386", "i686")
    if arm and "sse2" in cpu_flags:
        return f"{machine} on an x86 CPU"
    if x86 and ("asimd" in cpu_flags or "neon" in cpu_flags):
        return f"{machine} on an ARM CPU"
    return None


def int8_expectation(cpu: dict) -> dict:
    """The rule of thumb for int8 vs float speed on this CPU: {"family", "expect", "reason"}.

    `expect` is "faster" (int8 should beat float), "not faster" (about as fast, or slower) or None (no
    rule). Only an expectation: edgekit.results.int8_speed weighs it against a measured latency.
    """
    s = cpu.get("simd", {})
    if cpu.get("machine", "") in ("aarch64", "arm64", "armv7l", "armv8l") or s.get("neon"):
        if s.get("dotprod") or s.get("i8mm"):
            return {
                "family": "ARM with int8 dot-product",
                "expect": "faster",
                "reason": "SDOT/I8MM let XNNPACK's int8 kernels do 4x the multiply-accumulates per "
                "instruction of float",
            }
        return {
            "family": "ARM NEON without dot-product",
            "expect": "faster",
            "reason": "int8 moves 4x less data and uses 16-lane integer multiply-accumulate",
        }
    if s.get("avx512_vnni") or s.get("avx_vnni"):
        amx = " (and AMX-INT8 tiles)" if s.get("amx_int8") else ""
        return {
            "family": "x86 with VNNI",
            "expect": "faster",
            "reason": f"VPDPBUSD{amx} fuses the int8 multiply-accumulate, 4 products per 32-bit lane "
            "where a float FMA does one",
        }
    if s.get("avx2"):
        return {
            "family": "x86 AVX2 without VNNI",
            "expect": "not faster",
            "reason": "an int8 multiply-accumulate takes VPMADDUBSW+VPMADDWD+VPADDD (plus requantization) "
            "where float takes one FMA",
        }
    return {"family": "this CPU", "expect": None, "reason": "no SIMD features recognised"}


def int8_speed_note(cpu: dict) -> str:
    """The rule of thumb as one sentence: the `int8_note` of profile documents and bundle manifests."""
    e = int8_expectation(cpu)
    if e["expect"] == "faster":
        return (
            f"{e['family']}: {e['reason']}, so int8 is usually faster than float here "
            "(a rule of thumb; `edgekit profile` measures it)."
        )
    if e["expect"] == "not faster":
        return (
            f"{e['family']}: {e['reason']}, so int8 is usually about as fast as float or slower here; "
            "ARM (Raspberry Pi) and VNNI CPUs favour int8. The 4x smaller model holds anywhere."
        )
    return "no SIMD features recognised: int8 and float speeds are hard to predict on this CPU."


# --------------------------------------------------------------------------- the process and machine


def peak_rss_mb():
    """Peak resident memory of this process (MB), or None where not readable.

    Linux's VmHWM first: ru_maxrss survives fork+exec, so a script started from a big parent (the
    desktop CLI with TensorFlow loaded) would report the parent's peak instead of its own.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except Exception:
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
    except Exception:
        return None


def rss_mb():
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except Exception:
        return None


def _read(path: str):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_temperature_c():
    """CPU temperature from /sys/class/thermal (Raspberry Pi: cpu-thermal), or None."""
    best = None
    zones = sorted(glob.glob("/sys/class/thermal/thermal_zone*"))
    for zone in zones:
        raw = _read(os.path.join(zone, "temp"))
        kind = (_read(os.path.join(zone, "type")) or "").lower()
        try:
            value = int(raw) / 1000.0
        except (TypeError, ValueError):
            continue
        if any(k in kind for k in ("cpu", "x86_pkg", "soc", "coretemp")):
            return value
        best = value if best is None else best
    return best


THROTTLE_BITS = {
    0: "under_voltage",
    1: "frequency_capped",
    2: "throttled",
    3: "soft_temperature_limit",
    16: "under_voltage_occurred",
    17: "frequency_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temperature_limit_occurred",
}


def throttling():
    """Raspberry Pi `vcgencmd get_throttled` flags, or None where the tool is absent."""
    import shutil
    import subprocess

    tool = shutil.which("vcgencmd")
    if not tool:
        return None
    try:
        out = subprocess.run([tool, "get_throttled"], capture_output=True, text=True, timeout=5).stdout
        value = int(out.strip().split("=")[-1], 16)
    except Exception:
        return None
    return {"raw": hex(value), **{name: bool(value >> bit & 1) for bit, name in THROTTLE_BITS.items()}}


def os_name() -> str:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.platform()


def thermal_state() -> dict:
    """Temperature (None where unreadable) and, on a Raspberry Pi, the vcgencmd throttling flags."""
    state = {"temperature_c": cpu_temperature_c()}
    flags = throttling()
    if flags is not None:
        state["throttling"] = flags
    return state


def environment() -> dict:
    """Facts about the machine a figure was measured on."""
    return {
        "cpu": cpu_info(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "os": os_name(),
        "kernel": platform.release(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        **thermal_state(),
    }
