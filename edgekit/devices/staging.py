"""Staging a job on a target: the device scripts, bundles and input files put where the scripts run,
in a fresh run folder, and removed afterwards (deployments stay: they are reused).

Local targets run the scripts in place from a scratch folder; SSH targets get the bundle through
`deploy` (checked, sent only when changed) and inputs as one tar stream into WORKDIR/runs/<new>/.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edgekit.bundle.manifest import read_manifest
from edgekit.bundle.modelcheck import scripts_dir
from edgekit.devices.deploy import Deployment, deploy, wrap_tflite
from edgekit.devices.remote import RemotePaths
from edgekit.devices.targets.base import Target
from edgekit.errors import DeviceError

log = logging.getLogger("edgekit.devices")


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
