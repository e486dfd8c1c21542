"""`edgekit deploy`: a bundle + the device scripts -> DEVICE:WORKDIR/<id12>/, then `current` -> it.

Remote layout (WORKDIR is `~/edgekit` unless the device entry says otherwise):
    WORKDIR/<id12>/bundle/            manifest.json, labels.txt, *.tflite (+ reference.json, eval.npz)
    WORKDIR/<id12>/device_scripts/    edgelib.py, profile_latency.py, ...
    WORKDIR/<id12>/SHA256SUMS         checked on the device with `sha256sum -c` before use
    WORKDIR/current -> <id12>         switched atomically (symlink + rename)

<id12> is the first 12 hex digits of a sha256 over the bundle's id (its files' checksums) and the
device scripts' checksums, so an edgekit upgrade that changes a device script deploys afresh.
The float Keras model stays on the desktop (a device never needs it).

Safety: files are unpacked into WORKDIR/.incoming-<id12>-<random>, verified there and renamed into
place in one step; a deploy cut short leaves at most an `.incoming-*` folder (removed by a later
deploy) and the previous `current` untouched. A re-deploy checks the files on the device (sizes, then
sha256s, as `rsync -c`), re-sends only those that are missing or differ, and transfers nothing when
all match; every run on the device goes through this check first, so a damaged model is never run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import secrets
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from edgekit.bundle.manifest import MANIFEST, bundle_id, read_manifest, verify_checksums
from edgekit.devices.targets.base import Target
from edgekit.errors import (
    DeviceError,
    ExitCode,
    InputDataError,
    ModelFileError,
    VerificationError,
    error_class,
)

log = logging.getLogger("edgekit.devices")
DEPLOY_MARKER = ".edgekit_deploy.json"
SUMS = "SHA256SUMS"
_SKIP_SUFFIXES = (".keras", ".h5")  # desktop-only files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    device: str
    deploy_id: str  # 12 hex digits, the folder name
    bundle_id: str
    root: str  # absolute path on the device
    bundle_dir: str
    scripts_dir: str
    model_file: str  # the primary model (int8 when exported), absolute path on the device
    transferred_bytes: int
    skipped: bool  # already there and verified on the device: nothing was transferred
    repaired: tuple[str, ...] = ()  # files that were missing or differed on the device, re-sent

    def to_dict(self) -> dict:
        return asdict(self)

    def script(self, name: str) -> str:
        return f"{self.scripts_dir}/{name}"


def device_script_files() -> dict[str, Path]:
    """The device scripts shipped with edgekit (every .py in device_scripts/ but __init__)."""
    import edgekit.device_scripts as ds

    folder = Path(ds.__file__).parent
    return {p.name: p for p in sorted(folder.glob("*.py")) if p.name != "__init__.py"}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plan(bundle: str | Path) -> tuple[dict, dict[str, bytes], str]:
    """(manifest, {relative path: bytes} to send, deploy id); refuses a bundle that fails its checksums."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    bad = verify_checksums(bundle, manifest)
    if bad:
        raise VerificationError(
            f"bundle {bundle} has files that do not match its manifest: {', '.join(bad)}",
            hint="re-export it; edgekit will not deploy a damaged bundle",
        )
    files: dict[str, bytes] = {f"bundle/{MANIFEST}": (bundle / MANIFEST).read_bytes()}
    for name in sorted(manifest.get("files", {})):
        if not name.endswith(_SKIP_SUFFIXES):
            files[f"bundle/{name}"] = (bundle / name).read_bytes()
    for name, path in device_script_files().items():
        files[f"device_scripts/{name}"] = path.read_bytes()
    h = hashlib.sha256(bundle_id(manifest).encode())
    for rel in sorted(files):
        if rel.startswith("device_scripts/"):
            h.update(rel.encode() + b"\0" + _sha256(files[rel]).encode())
    return manifest, files, h.hexdigest()[:12]


def _tar(files: dict[str, bytes], extra: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel, data in {**files, **extra}.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


# Runs on the device (POSIX sh + coreutils): unpack into a fresh folder, verify, rename into place,
# switch `current`. Arguments: WORKDIR ID TMPNAME. Exits with edgekit's own codes (edgekit.errors.ExitCode).
_INSTALL = r"""
set -e
wd=$1; id=$2; tmp=$wd/$3
command -v sha256sum >/dev/null 2>&1 || { echo "edgekit: sha256sum is missing on the device (install coreutils)" >&2; exit @DEPENDENCY@; }
mkdir -p "$wd"
find "$wd" -maxdepth 1 -name '.incoming-*' -mmin +10 -exec rm -rf {} + 2>/dev/null || true
mkdir "$tmp"
trap 'rm -rf "$tmp"' EXIT
tar -xf - -C "$tmp"
cd "$tmp"
if ! sha256sum -c --quiet SHA256SUMS >"$tmp/.check" 2>&1; then
  echo "edgekit: checksum mismatch on the device: $(head -n 3 "$tmp/.check" | tr '\n' ' ')" >&2
  exit @VERIFY@
fi
rm -f "$tmp/.check"
cd "$wd"
if [ -d "$wd/$id" ]; then rm -rf "$tmp"; else mv "$tmp" "$wd/$id"; fi
trap - EXIT
""".replace("@DEPENDENCY@", str(int(ExitCode.DEPENDENCY))).replace("@VERIFY@", str(int(ExitCode.VERIFY)))

# Arguments: WORKDIR ID. `ln -s` + `mv -T` is a rename(2): readers see the old or the new link.
_SWITCH = r"""
set -e
cd "$1"
ln -s "$2" ".current.$$"
mv -T ".current.$$" current
"""

# Arguments: WORKDIR ID; stdin: one "SHA256 SIZE RELPATH" line per file WORKDIR/ID must hold. Prints
# @@current=..., then @@absent, or one "@@bad REL" per file that is missing, not a plain file, of another
# size (known bad without hashing) or of another sha256 (as `rsync -c`: the bytes decide, never a
# marker or an mtime), then @@checked.
_STATUS = r"""
wd=$1; id=$2
printf '@@current=%s\n' "$(readlink "$wd/current" 2>/dev/null)"
if [ ! -d "$wd/$id" ]; then echo "@@absent"; exit 0; fi
cd "$wd/$id" || exit @DEVICE@
command -v sha256sum >/dev/null 2>&1 || { echo "edgekit: sha256sum is missing on the device (install coreutils)" >&2; exit @DEPENDENCY@; }
while IFS=' ' read -r sum size rel; do
  [ -n "$rel" ] || continue
  if [ -L "$rel" ] || [ ! -f "$rel" ]; then echo "@@bad $rel"; continue; fi
  s=$(wc -c <"$rel" | tr -d ' ')
  if [ "$s" != "$size" ]; then echo "@@bad $rel"; continue; fi
  h=$(sha256sum <"$rel"); h=${h%% *}
  [ "$h" = "$sum" ] || echo "@@bad $rel"
done
echo "@@checked"
"""

# Arguments: WORKDIR ID TMPNAME; stdin: a tar of the files to replace and .repair.sums (their checksums).
# Each file, verified, is renamed over the damaged one (rename(2): a reader sees the old or the new
# file), then the whole folder is checked against SHA256SUMS once more.
_REPAIR = r"""
set -e
wd=$1; id=$2; tmp=$wd/$3
mkdir "$tmp"
trap 'rm -rf "$tmp"' EXIT
tar -xf - -C "$tmp"
cd "$tmp"
if ! sha256sum -c --quiet .repair.sums >.check 2>&1; then
  echo "edgekit: checksum mismatch on the device: $(head -n 3 .check | tr '\n' ' ')" >&2; exit @VERIFY@
fi
while IFS= read -r line; do
  rel=${line#*  }
  mkdir -p "$wd/$id/$(dirname "$rel")"
  mv -f "$tmp/$rel" "$wd/$id/$rel"
done < .repair.sums
cd "$wd/$id"
if ! sha256sum -c --quiet SHA256SUMS >"$tmp/.check" 2>&1; then
  echo "edgekit: checksum mismatch on the device after the repair: $(head -n 3 "$tmp/.check" | tr '\n' ' ')" >&2
  exit @VERIFY@
fi
"""


def _codes(script: str) -> str:
    return (
        script.replace("@DEPENDENCY@", str(int(ExitCode.DEPENDENCY)))
        .replace("@VERIFY@", str(int(ExitCode.VERIFY)))
        .replace("@DEVICE@", str(int(ExitCode.DEVICE)))
    )


_STATUS, _REPAIR = _codes(_STATUS), _codes(_REPAIR)


def _check_on_device(target: Target, wd: str, dep_id: str, expected: dict[str, bytes]) -> tuple[bool, list[str], str]:
    """(folder present, files that differ, current) from one round trip that hashes on the device."""
    listing = "".join(f"{_sha256(data)} {len(data)} {rel}\n" for rel, data in sorted(expected.items()))
    res = target.run(
        ["sh", "-c", _STATUS, "sh", wd, dep_id], input_file=io.BytesIO(listing.encode()), timeout=120
    )
    lines = res.stdout.splitlines()
    current = next((ln[len("@@current=") :].strip() for ln in lines if ln.startswith("@@current=")), "")
    if res.returncode != 0 or not any(ln in ("@@absent", "@@checked") for ln in lines):
        err = res.stderr.strip().splitlines()
        raise error_class(res.returncode or int(ExitCode.DEVICE))(
            f"checking the deployment on {target.name} failed: {err[-1] if err else 'no answer'}"
        )
    bad = [ln[len("@@bad ") :] for ln in lines if ln.startswith("@@bad ")]
    return "@@absent" not in lines, bad, current


def deploy(
    target: Target,
    bundle: str | Path,
    *,
    progress: Callable[[str], None] = lambda _m: None,
    timeout: float = 600,
) -> Deployment:
    """Make `bundle` the device's `current` deployment. The files on the device are checked (sizes,
    then sha256s) every time; only what is missing or differs is sent."""
    manifest, files, dep_id = plan(bundle)
    workdir = target.spec.workdir.rstrip("/") or "~/edgekit"
    wd = target.expand(workdir) if hasattr(target, "expand") else workdir
    marker = {
        "schema_version": 1,
        "deploy_id": dep_id,
        "bundle_id": bundle_id(manifest),
        "name": manifest.get("name"),
        "files": {rel: _sha256(data) for rel, data in files.items()},
    }
    sums = "".join(f"{_sha256(data)}  {rel}\n" for rel, data in sorted(files.items())).encode()
    meta = {SUMS: sums, DEPLOY_MARKER: json.dumps(marker, indent=1).encode()}
    progress(f"checking {target.name}:{wd}/{dep_id}")
    present, bad, current = _check_on_device(target, wd, dep_id, {**files, **meta})
    sent = 0
    if not present:
        sent = _install(target, wd, dep_id, _tar(files, meta), timeout, progress)
    elif bad:
        progress(f"{target.name}: {len(bad)} file(s) differ on the device, re-sending {', '.join(bad)}")
        fix = {rel: {**files, **meta}[rel] for rel in bad}
        fix[".repair.sums"] = "".join(f"{_sha256(fix[rel])}  {rel}\n" for rel in sorted(fix)).encode()
        sent = _install(target, wd, dep_id, _tar(fix, {}), timeout, progress, script=_REPAIR)
        log.warning("%s: repaired %s on the device (it differed from the bundle)", target.name, ", ".join(bad))
    if current != dep_id:
        progress(f"switching {target.name}:{wd}/current -> {dep_id}")
        res = target.run(["sh", "-c", _SWITCH, "sh", wd, dep_id], timeout=60)
        if res.returncode != 0:
            raise DeviceError(f"switching `current` on {target.name} failed: {res.stderr.strip()}")
    root = f"{wd}/{dep_id}"
    from edgekit.bundle.manifest import primary_model

    return Deployment(
        device=target.name,
        deploy_id=dep_id,
        bundle_id=marker["bundle_id"],
        root=root,
        bundle_dir=f"{root}/bundle",
        scripts_dir=f"{root}/device_scripts",
        model_file=f"{root}/bundle/{primary_model(manifest)['file']}",
        transferred_bytes=sent,
        skipped=present and not bad,
        repaired=tuple(bad),
    )


def _install(target: Target, wd: str, dep_id: str, payload: io.BytesIO, timeout: float, progress,
             script: str = _INSTALL) -> int:  # fmt: skip
    """Stream `payload` (a tar) to `script` on the device; the bytes sent."""
    sent = payload.getbuffer().nbytes
    progress(f"sending {sent / 1e6:.2f} MB to {target.name}")
    tmpname = f".incoming-{dep_id}-{secrets.token_hex(4)}"
    try:
        res = target.run(["sh", "-c", script, "sh", wd, dep_id, tmpname], input_file=payload, timeout=timeout)
    except DeviceError as exc:
        raise DeviceError(
            f"deploy to {target.name} was cut short ({exc}); the previous deployment stays current",
            hint="run the same deploy again",
        ) from None
    if res.returncode != 0:
        err = res.stderr.strip().splitlines()
        raise error_class(res.returncode)(
            f"deploy to {target.name} failed: {err[-1] if err else f'exit {res.returncode}'}"
        )
    return sent


def wrap_tflite(tflite: str | Path, out_dir: str | Path) -> Path:
    """A bare `.tflite` -> a minimal bundle (labels and preprocessing from its embedded metadata)."""
    from edgekit.bundle.atomic import write_json_atomic
    from edgekit.bundle.manifest import SCHEMA_VERSION, file_entries
    from edgekit.converters.tflite_file import NotTFLiteError, check_file
    from edgekit.device_scripts.edgelib import read_embedded

    src = Path(tflite)
    try:
        data = check_file(src)
    except NotTFLiteError as exc:
        raise ModelFileError(str(exc)) from None
    labels, meta = read_embedded(data)
    meta = meta or {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / src.name).write_bytes(data)
    names = [src.name]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "name": meta.get("name") or src.stem,
        "wrapped_from": str(src),
        "output_kind": meta.get("output_kind", "logits"),
        "models": [
            {"file": src.name, "precision": meta.get("precision", "unknown"), "size_bytes": len(data)}
        ],
    }
    if meta.get("preprocessing"):
        manifest["preprocessing"] = meta["preprocessing"]
    if labels:
        (out / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
        names.append("labels.txt")
        manifest["labels_file"] = "labels.txt"
        manifest["num_classes"] = len(labels)
    manifest["files"] = file_entries(out, names)
    write_json_atomic(out / MANIFEST, manifest)
    return out


def resolve_bundle(path: str | Path, scratch: str | Path) -> Path:
    """A bundle folder as given, or a bare .tflite wrapped into one under `scratch`."""
    p = Path(path)
    if p.is_dir():
        return p
    if p.is_file() and p.suffix == ".tflite":
        return wrap_tflite(p, Path(scratch) / p.stem)
    if p.is_file() and p.name == MANIFEST:
        return p.parent
    raise InputDataError(
        f"{path} is neither a bundle folder nor a .tflite file", hint="run `edgekit export` first"
    )
