"""The bundle's manifest.json: the one contract between export and everything downstream.

Bundle layout (a folder):
  manifest.json            this file
  labels.txt               one label per line, index = class id
  {model}_{precision}.tflite   one per exported precision (labels + preprocessing embedded)
  float_model.keras        the float model it came from (for `edgekit eval` on the desktop)
  reference.json           desktop figures (written by `edgekit eval`), optional
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgekit.errors import InputDataError, ModelFileError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LABELS = "labels.txt"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(bundle: str | Path) -> dict:
    bundle = Path(bundle)
    path = bundle / MANIFEST if bundle.is_dir() else bundle
    if not path.is_file():
        raise InputDataError(
            f"{bundle} is not an edgekit bundle: no {MANIFEST}", hint="run `edgekit export` first"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not valid JSON ({exc})", hint="re-export the bundle") from None
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ModelFileError(
            f"{path} has schema_version {data.get('schema_version')!r}; this edgekit reads {SCHEMA_VERSION}",
            hint="re-export the bundle with this edgekit version",
        )
    return data


def file_entries(bundle: Path, names: list[str]) -> dict:
    return {n: {"sha256": sha256_file(bundle / n), "size_bytes": (bundle / n).stat().st_size} for n in names}


def verify_checksums(bundle: str | Path, manifest: dict | None = None) -> list[str]:
    """Names of files whose sha256 does not match the manifest (missing files included)."""
    bundle = Path(bundle)
    manifest = manifest or read_manifest(bundle)
    bad = []
    for name, entry in manifest.get("files", {}).items():
        p = bundle / name
        if not p.is_file() or sha256_file(p) != entry["sha256"]:
            bad.append(name)
    return bad


def bundle_id(manifest: dict) -> str:
    """A stable id for a bundle: sha256 over the sorted file checksums (12 hex chars shown)."""
    h = hashlib.sha256()
    for name in sorted(manifest.get("files", {})):
        h.update(name.encode() + b"\0" + manifest["files"][name]["sha256"].encode() + b"\n")
    return h.hexdigest()


def read_labels(path: str | Path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise InputDataError(f"labels file {p} does not exist")
    labels = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not labels:
        raise InputDataError(f"labels file {p} is empty", hint="write one label per line")
    return labels


def primary_model(manifest: dict) -> dict:
    """The model entry the device uses by default: int8 when exported, else the first."""
    models = manifest["models"]
    for m in models:
        if m["precision"] == "int8":
            return m
    return models[0]


def default_labels(classes: int) -> tuple[str, ...]:
    """Names for a model without labels: `class_<output index>` (the device scripts use the same)."""
    return tuple(f"class_{i}" for i in range(classes))
