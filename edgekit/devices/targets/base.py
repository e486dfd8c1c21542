"""The target interface: how files reach a device and how commands run there.

Targets move bytes and run commands; they never interpret results (edgekit.devices.remote and jobs do).
Concrete targets: local.py (this machine), ssh.py (Raspberry Pi & co.), adb.py (Android).
Register each in TARGETS (one registry for targets, keyed by the inventory's `kind`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceSpec:
    """One inventory entry (see `edgekit devices`)."""

    name: str
    kind: str  # "local" | "ssh" | "adb"
    address: str = ""  # user@host[:port] for ssh, serial for adb, "" for local
    identity: str | None = None  # ssh private key file
    python: str = "python3"  # interpreter on the device (a venv's python after `devices setup`)
    workdir: str = "~/edgekit"  # where bundles and device scripts live on the device
    options: dict = field(default_factory=dict)  # kind-specific extras (host key, benchmark_model path, ...)

    @property
    def tags(self) -> tuple[str, ...]:
        """Groups this device belongs to (`--device tag:NAME` addresses all of them)."""
        return tuple(self.options.get("tags") or ())


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class Target(ABC):
    """A device edgekit can push files to and run commands on."""

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @abstractmethod
    def push(self, local_path: str, remote_path: str) -> None:
        """Copy a file or folder to the device."""

    @abstractmethod
    def pull(self, remote_path: str, local_path: str) -> None:
        """Copy a file from the device."""

    @abstractmethod
    def run(self, argv: list[str], *, timeout: float | None = None, stream=None) -> CommandResult:
        """Run argv on the device (no shell interpretation of the arguments).

        `stream`, when given, is called with each line of stderr as it arrives (progress).
        """

    @abstractmethod
    def exists(self, remote_path: str) -> bool: ...

    def describe(self) -> dict:
        """What this target is, for results and the database."""
        return {"name": self.spec.name, "kind": self.spec.kind, "address": self.spec.address}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


TARGETS: dict[str, str] = {
    # kind -> "module:Class"; imported lazily so SSH/adb libraries load only when used
    "local": "edgekit.devices.targets.local:LocalTarget",
    "ssh": "edgekit.devices.targets.ssh:SSHTarget",
    "adb": "edgekit.devices.targets.adb:ADBTarget",
}


def make_target(spec: DeviceSpec) -> Target:
    import importlib

    from edgekit.errors import UsageError

    if spec.kind not in TARGETS:
        raise UsageError(f"unknown device kind {spec.kind!r}; known: {', '.join(TARGETS)}")
    module, cls = TARGETS[spec.kind].split(":")
    return getattr(importlib.import_module(module), cls)(spec)
