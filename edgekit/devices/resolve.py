"""What a device command runs on and with: `--device NAME` -> a Target, MODEL_OR_BUNDLE -> the models.

The rest of running a job lives beside this: staging.prepare (files onto the target), remote.run_script
(run one script, parse its result), jobs (profile, evaluate, camera).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from edgekit.devices.targets.base import DeviceSpec, Target
from edgekit.errors import EdgekitError, InputDataError, ModelFileError, UsageError

# --------------------------------------------------------------------------- devices


def resolve_device(name: str | None) -> Target:
    """`--device NAME` -> a Target: this machine ("local", or no --device) or an inventory entry."""
    from edgekit.devices.targets.local import LocalTarget

    if name is None or name.strip() in ("", "local"):
        return LocalTarget(DeviceSpec(name="local", kind="local", python=sys.executable))
    return _inventory_target(name.strip())


def _inventory_target(name: str) -> Target:
    """A device registered with `edgekit devices add` (SSH, adb, or a named local entry)."""
    from edgekit.devices import inventory
    from edgekit.devices.targets.base import make_target

    if "," in name:
        raise UsageError(f"one device expected here; received the list {name!r}")
    return make_target(inventory.get(name))


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelRef:
    """One `.tflite` to run, with the bundle it belongs to (if any)."""

    path: Path
    precision: str | None = None
    bundle: Path | None = None
    manifest: dict | None = None
    trusted: bool = False  # its sha256 matches the bundle's manifest


def resolve_models(spec: str, *, all_precisions: bool) -> list[ModelRef]:
    """MODEL_OR_BUNDLE -> the models to run: every precision of a bundle (or its primary one), or the
    file itself. Each is checked first (structure; a subprocess probe when not from a verified bundle)."""
    from edgekit.bundle.manifest import MANIFEST, primary_model, read_manifest, verify_checksums
    from edgekit.bundle.modelcheck import check_model

    p = Path(spec).expanduser()
    if p.is_dir():
        manifest = read_manifest(p)
        bad = set(verify_checksums(p, manifest))
        entries = manifest.get("models") or []
        if not entries:
            raise ModelFileError(f"bundle {p} lists no models", hint="re-export it")
        chosen = entries if all_precisions else [primary_model(manifest)]
        refs = [
            ModelRef(p / e["file"], e.get("precision"), p, manifest, trusted=e["file"] not in bad)
            for e in chosen
        ]
    elif p.is_file():
        manifest = None
        bundle = None
        entry: dict = {}
        if (p.parent / MANIFEST).is_file():
            try:
                manifest = read_manifest(p.parent)
                entry = next((e for e in manifest.get("models", []) if e.get("file") == p.name), {})
                bundle = p.parent if entry else None
            except EdgekitError:
                manifest = None
        trusted = bool(entry) and p.name not in verify_checksums(p.parent, manifest)
        refs = [ModelRef(p, entry.get("precision"), bundle, manifest if bundle else None, trusted)]
    else:
        raise InputDataError(
            f"{spec} does not exist", hint="pass a .tflite file or a bundle folder made by `edgekit export`"
        )
    for ref in refs:
        check_model(ref.path, trusted=ref.trusted)
    return refs


# --------------------------------------------------------------------------- prepare


# --------------------------------------------------------------------------- run


# --------------------------------------------------------------------------- jobs


