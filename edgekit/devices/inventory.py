"""The device inventory: a small TOML file of named devices (`edgekit devices ...`).

Where it lives: `--config PATH` > `EDGEKIT_CONFIG` > `$EDGEKIT_HOME/devices.toml` > the user config
dir (platformdirs). It never holds passwords: SSH uses key files and ssh-agent only. Each SSH entry
carries the host keys accepted at `devices add`/`devices trust`, checked on every connection.

    schema_version = 1
    [devices.pi]
    kind = "ssh"
    address = "pi@raspberrypi.local:22"
    identity = "~/.ssh/id_ed25519"
    python = "~/edgekit/venv/bin/python"
    workdir = "~/edgekit"
    host_keys = ["ssh-ed25519 AAAA..."]
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from edgekit.devices.targets.base import DeviceSpec
from edgekit.errors import InputDataError, UsageError

SCHEMA_VERSION = 1
FILENAME = "devices.toml"
KINDS = ("ssh", "adb", "local")
LOCAL = DeviceSpec(name="local", kind="local")  # always available, even with an empty inventory
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CORE_KEYS = ("kind", "address", "identity", "python", "workdir")
LOCK_TIMEOUT_S = 30.0  # a read-modify-write takes milliseconds; this long means a stuck process


def default_path() -> Path:
    if os.environ.get("EDGEKIT_CONFIG"):
        return Path(os.environ["EDGEKIT_CONFIG"]).expanduser()
    if os.environ.get("EDGEKIT_HOME"):
        return Path(os.environ["EDGEKIT_HOME"]).expanduser() / FILENAME
    from platformdirs import user_config_dir

    return Path(user_config_dir("edgekit", appauthor=False)) / FILENAME


def check_name(name: str) -> str:
    if not _NAME_RE.match(name or "") or name == "local":
        raise UsageError(
            f"device name must be 1-64 letters, digits, '.', '_' or '-' (and not 'local'); received {name!r}"
        )
    return name


def _toml_load(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputDataError(
            f"device inventory {path} is not valid TOML ({exc})", hint="fix or delete it"
        ) from None


def load(path: str | os.PathLike | None = None) -> dict[str, DeviceSpec]:
    """All devices in the inventory (an absent file is an empty inventory)."""
    p = Path(path).expanduser() if path else default_path()
    if not p.is_file():
        return {}
    data = _toml_load(p)
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise InputDataError(f"device inventory {p} has schema_version {version!r}; this edgekit reads 1")
    out = {}
    for name, entry in (data.get("devices") or {}).items():
        if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
            raise InputDataError(f"device {name!r} in {p} needs kind = one of {', '.join(KINDS)}")
        _check_entry(name, entry, p)
        extras = {k: v for k, v in entry.items() if k not in _CORE_KEYS}
        out[name] = DeviceSpec(
            name=name,
            kind=entry["kind"],
            address=entry.get("address", ""),
            identity=entry.get("identity"),
            python=entry.get("python", "python3"),
            workdir=entry.get("workdir", "~/edgekit"),
            options=extras,
        )
    return out


def _check_entry(name: str, entry: dict, path: Path) -> None:
    """A hand-edited entry gets the checks `devices add` makes (name, SSH address)."""
    try:
        if name != "local":  # a `local` entry may override this machine's defaults
            check_name(name)
        if entry["kind"] == "ssh":
            from edgekit.devices.targets.ssh import parse_ssh_address

            parse_ssh_address(str(entry.get("address", "")))
    except UsageError as exc:
        raise InputDataError(f"device inventory {path}: {exc.message}", hint="fix the entry in the file") from None


@contextlib.contextmanager
def locked(path: str | os.PathLike | None = None) -> Iterator[Path]:
    """Hold the inventory's lock across a read-modify-write, so concurrent `devices add` processes queue
    instead of each writing back what it read (and dropping the others' entries). flock on a file of
    its own beside the inventory: the inventory itself is replaced by rename on every save."""
    p = Path(path).expanduser() if path else default_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    lock = p.with_name(f".{p.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InputDataError(
                        f"device inventory {p} stayed locked for {LOCK_TIMEOUT_S:.0f} s",
                        hint="another edgekit is changing it; retry when it is done",
                    ) from None
                time.sleep(0.02)
        yield p
    finally:
        os.close(fd)  # releases the lock


def _to_entry(spec: DeviceSpec) -> dict:
    entry = {"kind": spec.kind, "address": spec.address, "python": spec.python, "workdir": spec.workdir}
    if spec.identity:
        entry["identity"] = spec.identity
    entry.update({k: v for k, v in spec.options.items() if v is not None})
    return entry


def save(devices: dict[str, DeviceSpec], path: str | os.PathLike | None = None) -> Path:
    """Write the whole inventory atomically (temp file + rename), readable by the owner only."""
    import tomli_w

    p = Path(path).expanduser() if path else default_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    text = "# edgekit device inventory (edit with `edgekit devices`); no passwords here\n" + tomli_w.dumps(
        {"schema_version": SCHEMA_VERSION, "devices": {n: _to_entry(s) for n, s in sorted(devices.items())}}
    )
    from edgekit.bundle.atomic import write_text_atomic

    return write_text_atomic(p, text, mode=0o600)


def get(name: str, path: str | os.PathLike | None = None) -> DeviceSpec:
    if name == "local":
        return load(path).get("local", LOCAL)
    devices = load(path)
    if name not in devices:
        known = ", ".join(sorted(devices)) or "none yet"
        raise UsageError(
            f"no device named {name!r} in {Path(path) if path else default_path()} (known: {known})",
            hint="add one with `edgekit devices add NAME --ssh USER@HOST`",
        )
    return devices[name]


def put(spec: DeviceSpec, path: str | os.PathLike | None = None, *, replace_existing: bool = False) -> Path:
    with locked(path):
        devices = load(path)
        if spec.name in devices and not replace_existing:
            raise UsageError(
                f"device {spec.name!r} already exists", hint="use --replace, or `edgekit devices remove`"
            )
        devices[spec.name] = spec
        return save(devices, path)


def update(name: str, path: str | os.PathLike | None = None, **changes) -> DeviceSpec:
    """Change fields of one entry; `options` entries are merged (None removes a key)."""
    with locked(path):
        devices = load(path)
        spec = get(name, path) if name not in devices else devices[name]
        options = dict(spec.options)
        for k, v in (changes.pop("options", None) or {}).items():
            if v is None:
                options.pop(k, None)
            else:
                options[k] = v
        new = replace(spec, options=options, **changes)
        devices[name] = new
        save(devices, path)
        return new


def remove(name: str, path: str | os.PathLike | None = None) -> DeviceSpec:
    with locked(path):
        devices = load(path)
        spec = get(name, path)
        devices.pop(name, None)
        save(devices, path)
        return spec


def check_tag(tag: str) -> str:
    if not _NAME_RE.match(tag or ""):
        raise UsageError(f"a tag is 1-64 letters, digits, '.', '_' or '-'; received {tag!r}")
    return tag


def resolve(
    device: str | None, all_devices: bool = False, path: str | os.PathLike | None = None
) -> list[DeviceSpec]:
    """`--device a,b,tag:pi5` / `--all` -> specs, in the order given (a tag's devices sorted by name);
    no device means this machine."""
    devices = load(path)
    if all_devices:
        if not devices:
            raise UsageError(
                "--all given but the device inventory is empty", hint="see `edgekit devices add`"
            )
        return [devices[n] for n in sorted(devices)]
    items = [n.strip() for n in (device or "local").split(",") if n.strip()]
    if not items:
        raise UsageError(f"--device needs a name or a comma list; received {device!r}")
    names: list[str] = []
    for item in items:
        if item.startswith("tag:"):
            tag = check_tag(item[len("tag:") :])
            tagged = sorted(n for n, s in devices.items() if tag in s.tags)
            if not tagged:
                used = sorted({t for s in devices.values() for t in s.tags})
                raise UsageError(
                    f"no device has the tag {tag!r} (tags in use: {', '.join(used) or 'none'})",
                    hint="tag devices with `edgekit devices add NAME ... --tag TAG --replace`",
                )
            names += tagged
        else:
            names.append(item)
    return [get(n, path) for n in dict.fromkeys(names)]
