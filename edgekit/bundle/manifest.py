"""The bundle's manifest.json: the one contract between export and everything downstream.

Bundle layout (a folder):
  manifest.json            this file
  labels.txt               one label per line, index = class id
  {model}_{precision}.tflite   one per exported precision (labels + preprocessing embedded)
  float_model.keras        the float model it came from (for `edgekit eval` on the desktop)
  reference.json           desktop figures (written by `edgekit eval`), optional

It is checked against its schema when read (`validate`): one line and exit 4 for anything else,
every size bounded, and every file name a plain relative path inside the bundle (no absolute path,
no `..`); `bundle_path` refuses symbolic links, so nothing outside the bundle is read or deployed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from edgekit.device_scripts import edgelib
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
    """The bundle's manifest, checked against the schema (see `validate`)."""
    bundle = Path(bundle)
    path = bundle / MANIFEST if bundle.is_dir() else bundle
    if not path.is_file():
        raise InputDataError(
            f"{bundle} is not an edgekit bundle: no {MANIFEST}", hint="run `edgekit export` first"
        )
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ModelFileError(f"{path} is over {MAX_MANIFEST_BYTES >> 20} MiB: not an edgekit manifest")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        text = " ".join(str(exc).split())[:200]
        raise ModelFileError(f"{path} is not valid JSON ({text})", hint="re-export the bundle") from None
    return validate(data, path)


MAX_MANIFEST_BYTES = 64 << 20
MAX_LABELS_BYTES = 16 << 20
MAX_CLASSES = 1 << 20
_HEX = frozenset("0123456789abcdef")


def _kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__
    )


def validate(data, where: str | Path) -> dict:
    """The manifest when it follows the schema; ModelFileError naming the first problem otherwise.

    Every file name is a plain relative path inside the bundle, every size has a bound."""

    def bad(problem: str):
        raise ModelFileError(f"{where}: {problem}", hint="re-export the bundle, or repair manifest.json")

    if not isinstance(data, dict):
        bad(f"the manifest must be a JSON object; found {_kind(data)}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ModelFileError(
            f"{where} has schema_version {data.get('schema_version')!r}; this edgekit reads {SCHEMA_VERSION}",
            hint="re-export the bundle with this edgekit version",
        )
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        bad(f"`files` must be an object of file name -> {{sha256, size_bytes}}; found {_kind(files)}")
    for name, entry in files.items():
        _check_name(name, "a `files` entry", bad)
        if not isinstance(entry, dict):
            bad(f"files[{name!r}] must be an object with a sha256; found {_kind(entry)}")
        sha = entry.get("sha256")
        if not (isinstance(sha, str) and len(sha) == 64 and set(sha) <= _HEX):
            bad(f"files[{name!r}] has no sha256 of 64 hex digits")
        size = entry.get("size_bytes", 0)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            bad(f"files[{name!r}].size_bytes must be a whole number >= 0; found {size!r}")
    models = data.get("models")
    if not isinstance(models, list) or not models:
        found = "an empty list" if isinstance(models, list) else _kind(models)
        bad(f"`models` must be a non-empty list of model entries; found {found}")
    for i, m in enumerate(models):
        if not isinstance(m, dict):
            bad(f"models[{i}] must be an object; found {_kind(m)}")
        if "file" not in m:
            bad(f"models[{i}] has no `file`")
        _check_name(m["file"], f"models[{i}].file", bad)
        if m["file"] not in files:
            bad(f"models[{i}].file {m['file']!r} is not listed in `files` (no checksum to verify it by)")
        if not isinstance(m.get("precision", ""), str):
            bad(f"models[{i}].precision must be a string; found {_kind(m['precision'])}")
    for key in ("labels_file", "float_model"):
        if data.get(key) is not None:
            _check_name(data[key], f"`{key}`", bad)
    n = data.get("num_classes")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CLASSES):
        bad(f"num_classes must be a whole number in [1, {MAX_CLASSES}]; found {n!r}")
    if not isinstance(data.get("output_kind", ""), str):
        bad(f"output_kind must be a string; found {_kind(data['output_kind'])}")
    # A bundle deploy wraps around a bare .tflite takes its preprocessing from the model itself.
    if "preprocessing" in data or not data.get("wrapped_from"):
        problem = edgelib.preprocessing_problem(data.get("preprocessing"))
        if problem:
            bad(f"preprocessing: {problem}")
    return data


def _check_name(name, what: str, bad) -> None:
    problem = edgelib.bundle_name_problem(name)
    if problem:
        bad(f"{what} {name!r} {problem}")


def file_entries(bundle: Path, names: list[str]) -> dict:
    return {n: {"sha256": sha256_file(bundle / n), "size_bytes": (bundle / n).stat().st_size} for n in names}


def bundle_path(bundle: str | Path, name: str) -> Path:
    """`bundle/name` for a plain file name of the manifest; ModelFileError for a name that leaves the
    bundle or a path through a symbolic link (a bundle holds plain files, so nothing outside is read)."""
    bundle = Path(bundle)
    problem = edgelib.bundle_name_problem(name)
    if problem:
        raise ModelFileError(f"{bundle}: file name {name!r} {problem}", hint="re-export the bundle")
    p = bundle
    for part in name.split("/"):
        p = p / part
        try:
            mode = os.lstat(p).st_mode
        except OSError:
            return bundle / name  # missing: the caller says so (or the checksum check does)
        if stat.S_ISLNK(mode):
            raise ModelFileError(
                f"{p} is a symbolic link: a bundle holds plain files only",
                hint="copy the file into the bundle, or re-export it",
            )
    return p


def verify_checksums(bundle: str | Path, manifest: dict | None = None) -> list[str]:
    """Names of files whose sha256 does not match the manifest (missing files included); a symbolic
    link or a name outside the bundle raises ModelFileError."""
    bundle = Path(bundle)
    manifest = manifest or read_manifest(bundle)
    bad = []
    for name, entry in manifest.get("files", {}).items():
        p = bundle_path(bundle, name)
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
    """One label per line (UTF-8, at most 16 MiB); InputDataError with one line otherwise."""
    p = Path(path)
    if not p.is_file():
        raise InputDataError(f"labels file {p} does not exist")
    try:
        return edgelib.read_label_file(str(p))
    except edgelib.InputFailure as exc:
        raise InputDataError(str(exc)) from None


def bundle_labels(bundle: str | Path, manifest: dict) -> list[str] | None:
    """The bundle's labels file (None when it has none): inside the bundle, UTF-8, unique, and as many
    as the manifest's num_classes. A problem is the bundle's: ModelFileError (exit 4)."""
    p = bundle_path(bundle, manifest.get("labels_file") or LABELS)
    if not p.is_file():
        return None
    try:
        labels = read_labels(p)
    except InputDataError as exc:
        raise ModelFileError(exc.message, hint="re-export the bundle") from None
    dup = edgelib.duplicate_labels(labels)
    if dup:
        raise ModelFileError(
            f"{p} lists {dup[0]!r} twice: a bundle's labels must be unique", hint="re-export it"
        )
    n = manifest.get("num_classes")
    if n is not None and n != len(labels):
        raise ModelFileError(
            f"{Path(bundle) / MANIFEST} says num_classes {n} but {p.name} has {len(labels)} labels",
            hint="re-export the bundle",
        )
    return labels


def primary_model(manifest: dict) -> dict:
    """The model entry the device uses by default: int8 when exported, else the first."""
    models = manifest["models"]
    for m in models:
        if m.get("precision") == "int8":
            return m
    return models[0]


def default_labels(classes: int) -> tuple[str, ...]:
    """Names for a model without labels: `class_<output index>` (the device scripts use the same)."""
    return tuple(f"class_{i}" for i in range(classes))
