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

import contextlib
import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from edgekit.bundle.manifest import MANIFEST, bundle_id, read_manifest, verify_checksums
from edgekit.bundle.modelcheck import scripts_dir
from edgekit.devices.remote import RemotePaths
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


# --------------------------------------------------------------------------- runner integration


def prepare_remote(target: Target, host_paths: list[str]):
    """`prepare` for SSH devices: deploy the bundles the models belong to (a bare .tflite
    is wrapped first), push any other input (images, video, labels) to a scratch folder."""

    files: dict[str, str] = {}
    deployments: dict[str, Deployment] = {}
    others: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="edgekit-wrap-") as wraps:
        for raw in host_paths:
            p = Path(raw).expanduser().resolve()
            if p.suffix != ".tflite":
                others.append(p)
                continue
            bundle = p.parent
            try:
                listed = p.name in read_manifest(bundle).get("files", {})
            except Exception:  # no manifest or not ours: wrap the file on its own
                listed = False
            if not listed:
                bundle = wrap_tflite(p, Path(wraps) / f"{len(deployments)}_{p.stem}")
            key = str(bundle)
            if key not in deployments:
                deployments[key] = deploy(target, bundle)
            files[raw] = f"{deployments[key].bundle_dir}/{p.name}"
    if not deployments:  # nothing to deploy, but the scripts must be there: impossible to guess a bundle
        raise DeviceError("nothing to run on the device: no .tflite model was given")
    last = list(deployments.values())[-1]
    wd = target.expand(target.spec.workdir.rstrip("/"))
    scratch = _new_run_folder(target, f"{wd}/runs")
    res = target.run(["mkdir", "-p", scratch], timeout=60)
    if res.returncode != 0:
        raise DeviceError(f"cannot create {scratch} on {target.name}: {res.stderr.strip()}")
    if others:
        files.update(_push_inputs(target, others, f"{scratch}/in"))
    for raw in host_paths:  # the runner looks paths up as it gave them
        rp = str(Path(raw).expanduser().resolve())
        if raw not in files and rp in files:
            files[raw] = files[rp]
    return RemotePaths(scripts=last.scripts_dir, python=target.spec.python, scratch=scratch, files=files)


# WORKDIR/runs: drop run folders older than a day (whoever made them), list the others.
_LIST_RUNS = r"""
mkdir -p "$1" && find "$1" -mindepth 1 -maxdepth 1 -type d -mmin +1440 -exec rm -rf {} + 2>/dev/null
ls -1 "$1" 2>/dev/null
exit 0
"""


def _new_run_folder(target: Target, runs: str) -> str:
    """RUNS/<host>-<pid>-<random> for this run, once the folders that edgekit processes of this machine
    left behind when they were killed (no cleanup ran: kill -9, power cut) are removed."""
    import os
    import re
    import socket

    me = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:40] or "host"
    res = target.run(["sh", "-c", _LIST_RUNS, "sh", runs], timeout=60)
    stale = []
    for name in res.stdout.split():
        host, _, rest = name.partition("-")
        pid = rest.split("-", 1)[0]
        if host == me and pid.isdigit() and not _alive(int(pid)):
            stale.append(f"{runs}/{name}")
    if stale:
        target.run(["rm", "-rf", "--", *stale], timeout=60)
    return f"{runs}/{me}-{os.getpid()}-{secrets.token_hex(4)}"


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _push_inputs(target: Target, paths: list[Path], dest: str) -> dict[str, str]:
    """Image folders, videos, labels, CSVs -> DEST/<i>/<name> on the device in one tar stream."""
    with inputs_tar(paths, dest) as (buf, mapping, skipped):
        for path, reason in skipped:
            log.warning("not sent to %s: %s", target.name, reason or path)
        res = target.run(
            ["sh", "-c", 'mkdir -p "$1" && tar -xf - -C "$1"', "sh", dest], input_file=buf, timeout=1800
        )
    if res.returncode != 0:
        raise DeviceError(f"copying inputs to {target.name}:{dest} failed: {res.stderr.strip()[-300:]}")
    return mapping


@contextlib.contextmanager
def inputs_tar(paths: list[Path], dest: str):
    """(tar file, {host path: device path}, [(skipped path, reason)]) for `_push_inputs`.

    Only regular files travel (links are followed, a named pipe or a dangling link is skipped), and
    no image the device would refuse to read (over the pixel or size cap: edgelib.screen_image), so
    a decompression bomb never reaches a device. A CSV's rows point at images relative to it, so its
    images travel along and the rows are rewritten to their new relative places (the device never
    sees a desktop path).
    """
    import csv

    mapping: dict[str, str] = {}
    skipped: list[tuple[str, str]] = []
    paths = sorted(paths, key=lambda q: q.suffix.lower() != ".csv")  # CSVs first: they claim their images
    with tempfile.TemporaryFile() as buf:
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for i, p in enumerate(paths):
                if str(p) in mapping:  # an image a CSV already carried
                    continue
                arc = f"{i}/{p.name}"
                mapping[str(p)] = f"{dest}/{arc}"
                if p.suffix.lower() != ".csv" or not p.is_file():
                    _add_tree(tar, p, arc, skipped, set())
                    continue
                out = io.StringIO()
                writer = csv.writer(out, lineterminator="\n")
                with open(p, newline="", encoding="utf-8") as f:
                    for k, row in enumerate(csv.reader(f)):
                        img = Path(row[0].strip()) if row and row[0].strip() else None
                        if img is not None and not row[0].startswith("#"):
                            img = img if img.is_absolute() else p.parent / img
                            if img.is_file() and _add_file(tar, img, f"{i}/images/{k}_{img.name}", skipped):
                                mapping.setdefault(str(img.resolve()), f"{dest}/{i}/images/{k}_{img.name}")
                                row = [f"images/{k}_{img.name}", *row[1:]]
                        writer.writerow(row)
                data = out.getvalue().encode("utf-8")
                info = tarfile.TarInfo(arc)
                info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        yield buf, mapping, skipped


def _add_tree(tar: tarfile.TarFile, p: Path, arc: str, skipped: list, seen: set) -> None:
    if not p.is_dir():
        _add_file(tar, p, arc, skipped)
        return
    real = os.path.realpath(p)
    if real in seen:  # a link back up the tree
        return
    seen.add(real)
    info = tarfile.TarInfo(arc)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
    tar.addfile(info)
    for child in sorted(p.iterdir()):
        _add_tree(tar, child, f"{arc}/{child.name}", skipped, seen)


def _add_file(tar: tarfile.TarFile, p: Path, arc: str, skipped: list) -> bool:
    """Add one regular file (an image only when the device could read it); False when skipped."""
    from edgekit.device_scripts import edgelib

    if p.suffix.lower() in edgelib.IMAGE_EXTENSIONS:
        reason = edgelib.screen_image(str(p))
        if reason:
            skipped.append((str(p), reason))
            return False
    try:
        f = open(p, "rb", opener=lambda path, flags: os.open(path, flags | os.O_NONBLOCK))
    except OSError as exc:
        skipped.append((str(p), f"cannot read {p}: {exc.strerror or exc}"))
        return False
    with f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            skipped.append((str(p), f"{p} is not a regular file"))
            return False
        info = tarfile.TarInfo(arc)
        info.size, info.mode, info.mtime = st.st_size, 0o644, int(st.st_mtime)
        tar.addfile(info, f)
    return True


def cleanup_remote(target: Target, paths) -> None:
    """Remove the run's scratch folder (deployments stay: they are reused)."""
    import contextlib

    with contextlib.suppress(Exception):
        target.run(["rm", "-rf", paths.scratch], timeout=60)


Preparer = Callable[[Target, list[str]], RemotePaths]



def _prepare_local(target: Target, host_paths: list[str]) -> RemotePaths:
    scratch = tempfile.mkdtemp(prefix="edgekit-run-")
    return RemotePaths(
        scripts=str(scripts_dir()),
        python=target.spec.python,
        scratch=scratch,
        files={p: str(Path(p).expanduser().resolve()) for p in host_paths},
    )



def _cleanup_local(target: Target, paths: RemotePaths) -> None:
    shutil.rmtree(paths.scratch, ignore_errors=True)



def _prepare_ssh(target: Target, host_paths: list[str]) -> RemotePaths:
    from edgekit.devices.deploy import prepare_remote

    return prepare_remote(target, host_paths)



def _cleanup_ssh(target: Target, paths: RemotePaths) -> None:
    from edgekit.devices.deploy import cleanup_remote

    cleanup_remote(target, paths)



# kind -> (prepare, cleanup). SSH: deploy the bundle + scripts (edgekit.devices.deploy), push data.
PREPARERS: dict[str, tuple[Preparer, Callable[[Target, RemotePaths], None]]] = {
    "local": (_prepare_local, _cleanup_local),
    "ssh": (prepare_remote, cleanup_remote),
}



def prepare(target: Target, host_paths: list[str]) -> RemotePaths:
    """Make the device scripts and `host_paths` (models with their bundles, data) available on target."""
    if target.spec.kind not in PREPARERS:
        raise DeviceError(f"running device scripts on {target.spec.kind} devices is not available yet")
    return PREPARERS[target.spec.kind][0](target, [str(p) for p in host_paths])



def cleanup(target: Target, paths: RemotePaths) -> None:
    PREPARERS[target.spec.kind][1](target, paths)
