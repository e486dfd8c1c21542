"""Files and folders written whole or not at all, with the permissions the umask asks for.

The one helper behind every file edgekit writes (manifests, reference.json, run folders, reports,
the device inventory): a temporary file in the same folder, fsync, rename. mkstemp and mkdtemp make
0600 files and 0700 folders; build outputs should be as readable as anything else the user makes, so
modes follow the umask and only the device inventory asks for 0600.

A bundle folder is replaced by exchanging it with the new one in one rename (Linux renameat2
RENAME_EXCHANGE): readers see the old bundle or the new one, never none. Where the exchange is not
available, the old folder is renamed aside first and put back if the new one cannot take its
place; a process killed between the two renames leaves the old folder aside, and the next write to
that folder puts it back (restore_or_clean).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from edgekit.errors import ModelFileError

STALE_AGE_S = 3600  # a temporary folder without a live owner older than this is left over


def umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask is not thread-safe)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


def write_bytes_atomic(path: str | Path, data: bytes, *, mode: int | None = None) -> Path:
    """Write via a temporary file + fsync + rename: a crash never leaves half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str, *, mode: int | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


def write_json_atomic(path: str | Path, data, *, mode: int | None = None) -> Path:
    return write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"), mode=mode)


# --------------------------------------------------------------------------- folders


def temp_dir_beside(dest: Path) -> Path:
    """An empty folder next to `dest` (same file system, so it can be renamed into place), umask modes.

    Its name carries this process's id, so a later run can tell a live writer's folder from a leftover."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=dest.parent))
    os.chmod(tmp, dir_mode())
    return tmp


def replace_dir(new: Path, dest: Path) -> None:
    """Put folder `new` at `dest`, replacing the folder there without a moment with neither."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise ModelFileError(f"output {dest} exists and is not a folder", hint="choose another -o/--output")
    if not dest.exists():
        os.rename(new, dest)
        return
    if _exchange(new, dest):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old folder
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{secrets.token_hex(3)}")
    os.rename(dest, old)
    try:
        os.rename(new, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def restore_or_clean(dest: Path) -> list[Path]:
    """Put back a folder an interrupted replace left aside, and remove leftover temporary folders
    of writes to `dest` whose process is gone. Returns what was removed or restored."""
    done = []
    if not dest.parent.is_dir():
        return done
    for p in sorted(dest.parent.glob(f".{dest.name}.*-*")):
        kind, _, rest = p.name[len(dest.name) + 2 :].partition("-")
        if kind not in ("tmp", "old") or not p.is_dir() or p.is_symlink() or _alive(rest, p):
            continue
        if kind == "old" and not os.path.lexists(dest):
            os.rename(p, dest)
        else:
            shutil.rmtree(p, ignore_errors=True)
        done.append(p)
    return done


def _alive(rest: str, p: Path) -> bool:
    pid = rest.split("-", 1)[0]
    if not pid.isdigit():  # a name from an older edgekit (no pid): left over once it is old enough
        return time.time() - p.stat().st_mtime < STALE_AGE_S
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False  # a file system or kernel without exchange: rename aside instead
    raise OSError(err, os.strerror(err), str(b))
