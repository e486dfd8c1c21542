"""`edgekit devices check` and `devices setup`: what a device has, and making it ready.

The probe is one POSIX-sh script (plus a short Python snippet when Python exists) sent over the
target, so a device needs nothing installed beforehand. `setup` creates a virtual environment in
WORKDIR/venv (Raspberry Pi OS Bookworm refuses system-wide pip, PEP 668) and installs numpy, Pillow
and one interpreter package, chosen from what the device reports (see `choose_runtime`).

Wheel availability on PyPI (checked 2026-11 with `pip install --dry-run --platform ...`):
  ai-edge-litert 2.3  manylinux aarch64 + x86_64, CPython 3.10-3.14, glibc >= 2.27 (2.1 for 3.9;
                      1.4 for glibc 2.17-2.26); no armv7l (32-bit) wheel, no 3.8.
  tflite-runtime 2.14 manylinux aarch64 CPython 3.8-3.11 and armv7l 3.11, glibc >= 2.34, numpy < 2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from edgekit.devices.targets.base import Target
from edgekit.errors import DeviceError, UsageError

RUNTIME_PACKAGES = ("ai-edge-litert", "tflite-runtime")
VENV = "venv"
_RUNTIME_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.-]*)\s*(?:==\s*(\d+(?:\.\d+){0,3}))?\s*$")


def parse_runtime(spec: str) -> tuple[str, str | None]:
    """`--runtime` -> (package, exact version or None): `tflite-runtime`, `ai-edge-litert==2.1.0`."""
    m = _RUNTIME_RE.fullmatch(spec or "")
    package = m[1].lower().replace("_", "-") if m else None
    if package not in RUNTIME_PACKAGES:
        raise UsageError(
            f"--runtime must be {' or '.join(RUNTIME_PACKAGES)}, optionally pinned exactly "
            f"(e.g. ai-edge-litert==2.1.0); received {spec!r}"
        )
    return package, m[2]


def device_arch(uname_arch: str, pyinfo: dict | None) -> str:
    """The architecture wheels must be built for: the device Python's, not the kernel's.

    A 32-bit userland on a 64-bit kernel (Raspberry Pi OS 32-bit on a Pi 4/5) reports aarch64 from
    `uname -m` and from platform.machine() alike (both ask the kernel); the interpreter's pointer width
    gives it away, as pip's `packaging` tags do it (aarch64 -> armv7l/armv8l, x86_64 -> i686).
    """
    machine = (pyinfo or {}).get("machine") or uname_arch or ""
    if (pyinfo or {}).get("pointer_bits") == 32:
        if machine in ("aarch64", "arm64", "armv8l", "armv8b"):
            return "armv7l"
        if machine in ("x86_64", "amd64"):
            return "i686"
    return machine


_PY_SNIPPET = r"""
import importlib, json, platform, struct, sys
out = {"machine": platform.machine(), "pointer_bits": struct.calcsize("P") * 8,
       "python": platform.python_version(), "executable": sys.executable, "implementation": platform.python_implementation(),
       "in_venv": sys.prefix != getattr(sys, "base_prefix", sys.prefix), "modules": {}}
try:
    out["libc"] = "-".join(platform.libc_ver())
except Exception:
    pass
def ver(dist, mod):
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return getattr(mod, "__version__", "unknown")
for key, dist, name in (("ai_edge_litert", "ai-edge-litert", "ai_edge_litert.interpreter"),
                        ("tflite_runtime", "tflite-runtime", "tflite_runtime.interpreter"),
                        ("numpy", "numpy", "numpy"), ("cv2", "opencv-python-headless", "cv2"),
                        ("PIL", "pillow", "PIL")):
    try:
        mod = importlib.import_module(name)
        out["modules"][key] = {"ok": True, "version": ver(dist, importlib.import_module(name.split(".")[0]))}
    except Exception as exc:
        out["modules"][key] = {"ok": False, "error": exc.__class__.__name__ + ": " + str(exc)[:160]}
import importlib.util
spec = importlib.util.find_spec("tensorflow")
out["modules"]["tensorflow"] = {"ok": spec is not None, "version": ver("tensorflow", None) if spec else None}
try:
    import venv, ensurepip  # noqa: F401  (Debian splits these into python3-venv)
    out["venv_module"] = True
except Exception:
    out["venv_module"] = False
print(json.dumps(out))
"""

# Arguments: WORKDIR PYTHON SNIPPET. Prints key=value lines, then the snippet's JSON after @@python=.
_PROBE = r"""
wd=$1; py=$2
echo "uname_arch=$(uname -m)"
echo "kernel=$(uname -sr)"
if [ -r /etc/os-release ]; then . /etc/os-release; echo "os=${PRETTY_NAME:-$NAME}"; fi
echo "glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null)"
d=$wd; while [ ! -d "$d" ] && [ "$d" != "/" ]; do d=$(dirname "$d"); done
echo "disk_free_kb=$(df -Pk "$d" 2>/dev/null | awk 'NR==2 {print $4}')"
echo "mem_total_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null)"
echo "mem_available_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo 2>/dev/null)"
m=$(tr -d '\0' </proc/device-tree/model 2>/dev/null)
[ -n "$m" ] || m=$(awk -F': *' '/^(model name|Hardware|cpu model)/ {print $2; exit}' /proc/cpuinfo 2>/dev/null)
echo "cpu_model=$m"
echo "cpu_cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null)"
t=$(cat /sys/class/thermal/thermal_zone0/temp 2>/dev/null)
echo "temp_millic=$t"
echo "sha256sum=$(command -v sha256sum)"
if command -v "$py" >/dev/null 2>&1 || [ -x "$py" ]; then
  printf '@@python='; "$py" -c "$3" 2>&1 | tail -n 1
else
  echo "@@python="
fi
"""


@dataclass(frozen=True)
class RuntimeChoice:
    package: str | None  # None: no prebuilt wheel fits this device
    requirements: tuple[str, ...]
    reason: str
    version: str | None = None  # an exact pin from `--runtime PACKAGE==VERSION`


def _ver(text: str | None) -> tuple[int, ...]:
    m = re.search(r"(\d+)\.(\d+)", text or "")
    return (int(m[1]), int(m[2])) if m else ()


def choose_runtime(
    arch: str, python: str, glibc: str | None, *, override: str | None = None
) -> RuntimeChoice:
    """Which interpreter package to install, and why, from what the device reports."""
    py = _ver(python)
    libc = _ver(glibc)
    base = ("numpy", "pillow")
    if override:
        package, version = parse_runtime(override)
        req = f"{package}=={version}" if version else package
        reqs = (req, "numpy<2", "pillow") if package == "tflite-runtime" else (req, *base)
        return RuntimeChoice(package, reqs, f"{req} requested with --runtime", version)
    where = f"{arch}, Python {python or '?'}, {glibc or 'unknown libc'}"
    if arch in ("aarch64", "arm64", "x86_64", "amd64"):
        if py and (3, 9) <= py <= (3, 14) and (not libc or libc >= (2, 17)):
            return RuntimeChoice(
                "ai-edge-litert",
                ("ai-edge-litert", *base),
                f"{where}: ai-edge-litert (LiteRT, the maintained successor of tflite-runtime) has wheels "
                "for 64-bit ARM/x86 on Python 3.9-3.14",
            )
        if py == (3, 8) and arch in ("aarch64", "arm64") and libc and libc >= (2, 34):
            return RuntimeChoice(
                "tflite-runtime",
                ("tflite-runtime==2.14.0", "numpy<2", "pillow"),
                f"{where}: ai-edge-litert has no Python 3.8 wheel; tflite-runtime 2.14 does "
                "(needs glibc >= 2.34 and numpy < 2)",
            )
        return RuntimeChoice(
            None, (), f"{where}: no prebuilt interpreter wheel fits (ai-edge-litert needs Python 3.9-3.14)"
        )
    if arch in ("armv7l", "armv8l", "armv6l"):
        if py == (3, 11) and arch != "armv6l" and libc and libc >= (2, 34):
            return RuntimeChoice(
                "tflite-runtime",
                ("tflite-runtime==2.14.0", "numpy<2", "pillow"),
                f"{where}: ai-edge-litert has no 32-bit ARM wheel; tflite-runtime 2.14 has an armv7l "
                "wheel for Python 3.11 with glibc >= 2.34 (and needs numpy < 2)",
            )
        return RuntimeChoice(
            None,
            (),
            f"{where}: no 32-bit ARM wheel of ai-edge-litert, and tflite-runtime 2.14's armv7l wheel needs "
            "Python 3.11 + glibc >= 2.34; install the 64-bit Raspberry Pi OS (Bookworm), or try "
            "`--runtime tflite-runtime` with piwheels",
        )
    return RuntimeChoice(None, (), f"{where}: no prebuilt interpreter wheel is known for this architecture")


@dataclass(frozen=True)
class DeviceReport:
    device: str
    reachable: bool
    facts: dict = field(default_factory=dict)
    python: dict | None = None
    runtime: dict | None = None  # the importable interpreter package, if any
    recommended: dict | None = None  # RuntimeChoice as a dict
    fixes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"schema_version": 1, **asdict(self), "fixes": list(self.fixes)}


def probe(target: Target, python: str | None = None) -> tuple[dict, dict | None]:
    """(key=value facts, the Python snippet's JSON or None) for a device."""
    py = python or target.spec.python
    res = target.run(["sh", "-c", _PROBE, "sh", target.spec.workdir, py, _PY_SNIPPET], timeout=120)
    if res.returncode != 0:
        raise DeviceError(f"probing device {target.name!r} failed: {res.stderr.strip()[-300:]}")
    return parse_probe(res.stdout)


def parse_probe(stdout: str) -> tuple[dict, dict | None]:
    """The probe's output -> (facts, Python snippet JSON or None). `arch` is the device Python's
    architecture (device_arch); `uname_arch` the kernel's, kept as extra information."""
    facts: dict = {}
    pyinfo = None
    for line in stdout.splitlines():
        if line.startswith("@@python="):
            raw = line[len("@@python=") :].strip()
            try:
                pyinfo = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                pyinfo = {"error": raw[:300]}
        elif "=" in line:
            k, _, v = line.partition("=")
            facts[k.strip()] = v.strip()
    for k in ("disk_free_kb", "mem_total_kb", "mem_available_kb", "cpu_cores"):
        facts[k] = int(facts[k]) if facts.get(k, "").isdigit() else None
    t = facts.pop("temp_millic", "")
    facts["temperature_c"] = round(int(t) / 1000, 1) if t.lstrip("-").isdigit() else None
    facts.setdefault("uname_arch", "")
    usable = isinstance(pyinfo, dict) and "python" in pyinfo
    facts["arch"] = device_arch(facts["uname_arch"], pyinfo if usable else None)
    facts["arch_source"] = "python" if usable and pyinfo.get("machine") else "uname"
    return facts, pyinfo


def check(target: Target, *, runtime: str | None = None) -> DeviceReport:
    """Everything `devices check` reports, with the exact fix for each missing piece."""
    facts, pyinfo = probe(target)
    return assess(target.name, target.spec.python, target.spec.workdir, facts, pyinfo, runtime=runtime)


def assess(
    name: str, python: str, workdir: str, facts: dict, pyinfo: dict | None, *, runtime: str | None = None
) -> DeviceReport:
    """The report for what a probe found (apart from `check` so recorded probes can be judged)."""
    fixes: list[str] = []
    py_ok = bool(pyinfo) and "python" in pyinfo
    if not py_ok:
        detail = (pyinfo or {}).get("error", "not found")
        fixes.append(
            f"Python `{python}` is not usable on the device ({detail}): "
            f"sudo apt install python3 python3-venv, then `edgekit devices setup {name}`"
        )
    choice = choose_runtime(
        facts.get("arch", ""), (pyinfo or {}).get("python", ""), facts.get("glibc"), override=runtime
    )
    have = None
    mods = (pyinfo or {}).get("modules", {})
    for key in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        if mods.get(key, {}).get("ok"):
            have = {"package": key, "version": mods[key].get("version")}
            break
    if py_ok and (have is None or not mods.get("numpy", {}).get("ok")):
        if choice.package:
            fixes.append(
                f"no TFLite interpreter/numpy in {python}: run `edgekit devices setup {name}` "
                f"(installs {', '.join(choice.requirements)} into {workdir}/{VENV}; {choice.reason})"
            )
        else:
            fixes.append(f"no TFLite interpreter importable and {choice.reason}")
    if py_ok and not mods.get("cv2", {}).get("ok"):
        fixes.append(
            f"OpenCV missing (only `edgekit camera` needs it): `edgekit devices setup {name} --camera` "
            "or sudo apt install python3-opencv"
        )
    if py_ok and not pyinfo.get("in_venv") and not pyinfo.get("venv_module"):
        fixes.append("the venv module is missing: sudo apt install python3-venv")
    if not facts.get("sha256sum"):
        fixes.append("sha256sum is missing (deploy verifies checksums with it): sudo apt install coreutils")
    free = facts.get("disk_free_kb")
    if free is not None and free < 200_000:
        fixes.append(f"only {free // 1024} MB free near {workdir}: free some space (200 MB recommended)")
    return DeviceReport(
        device=name,
        reachable=True,
        facts=facts,
        python=pyinfo if py_ok else None,
        runtime=have,
        recommended=asdict(choice),
        fixes=tuple(fixes),
    )


def setup(
    target: Target,
    *,
    runtime: str | None = None,
    base_python: str = "python3",
    find_links: str | None = None,
    camera: bool = False,
    system_site_packages: bool = False,
    progress: Callable[[str], None] = lambda _m: None,
    timeout: float = 1800,
) -> dict:
    """Create WORKDIR/venv and install the device requirements; does nothing when already done."""
    workdir = target.spec.workdir.rstrip("/")
    venv_py = f"{workdir}/{VENV}/bin/python"
    progress("probing the device")
    facts, base = probe(target, base_python)
    if not base or "python" not in base:
        raise DeviceError(
            f"`{base_python}` is not usable on device {target.name!r}",
            hint="sudo apt install python3 python3-venv (or pass --python PATH)",
        )
    choice = choose_runtime(facts.get("arch", ""), base["python"], facts.get("glibc"), override=runtime)
    if choice.package is None:
        raise DeviceError(f"cannot choose an interpreter package: {choice.reason}", hint="see --runtime")
    reqs = list(choice.requirements) + (["opencv-python-headless"] if camera else [])
    _, current = probe(target, venv_py)
    wanted_mod = choice.package.replace("-", "_")
    if current and _satisfied(current, wanted_mod, camera, choice.version):
        progress("already set up")
        return _setup_result(target, venv_py, choice, reqs, current, changed=False)
    if not (current and current.get("in_venv")):
        progress(f"creating {workdir}/{VENV} with {base_python} {base['python']}")
        argv = [
            base_python,
            "-m",
            "venv",
            *(["--system-site-packages"] if system_site_packages else []),
            f"{workdir}/{VENV}",
        ]
        res = target.run(["sh", "-c", 'mkdir -p "$1"', "sh", workdir], timeout=60)
        res = target.run(argv, timeout=300, stream=progress)
        if res.returncode != 0:
            raise DeviceError(
                f"creating a virtual environment on {target.name!r} failed: {res.stderr.strip()[-300:]}",
                hint="sudo apt install python3-venv",
            )
    pip = [venv_py, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    if find_links:
        progress(f"copying wheels from {find_links}")
        target.push(find_links, f"{workdir}/wheels")
        pip += ["--no-index", "--find-links", f"{workdir}/wheels"]
    progress(f"installing {' '.join(reqs)}")
    # pip reports on stdout; send it to stderr so each line streams as progress while it works
    res = target.run(
        ["sh", "-c", 'exec "$@" 1>&2', "sh", *pip, *reqs],
        timeout=timeout,
        stream=lambda line: progress(line.strip()[:100]),
    )
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["pip failed"]
        raise DeviceError(
            f"pip install on {target.name!r} failed: {tail[0]}",
            hint="a real device needs network access to PyPI (or pass --find-links DIR with the wheels)",
        )
    _, after = probe(target, venv_py)
    if not after or not _satisfied(after, wanted_mod, camera, choice.version):
        raise DeviceError(
            f"set-up finished but {choice.requirements[0]} still does not import on {target.name!r}: "
            f"{(after or {}).get('modules', {}).get(wanted_mod)}"
        )
    return _setup_result(target, venv_py, choice, reqs, after, changed=True)


def _satisfied(pyinfo: dict, module: str, camera: bool, version: str | None = None) -> bool:
    mods = pyinfo.get("modules", {})
    need = [module, "numpy"] + (["cv2"] if camera else [])
    if version and _release(mods.get(module, {}).get("version")) != _release(version):
        return False  # a pinned runtime: another installed version is not "already set up"
    return bool(pyinfo.get("in_venv")) and all(mods.get(m, {}).get("ok") for m in need)


def _release(version: str | None) -> tuple[int, ...]:
    """'2.1' and '2.1.0' are the same release (pip's == matches them so too)."""
    parts = [int(x) for x in re.findall(r"\d+", (version or "").split("+")[0])[:4]]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _setup_result(target, venv_py, choice, reqs, pyinfo, changed: bool) -> dict:
    mod = choice.package.replace("-", "_")
    return {
        "schema_version": 1,
        "device": target.name,
        "python": venv_py,
        "python_version": pyinfo.get("python"),
        "runtime": choice.package,
        "runtime_version": pyinfo.get("modules", {}).get(mod, {}).get("version"),
        "reason": choice.reason,
        "requirements": reqs,
        "changed": changed,
    }
