"""Process snapshots for the leftover-process tests.

A process can exit, or turn zombie, between being listed and being read: psutil then raises. Each
snapshot reads a command line once, where it is listed, and leaves out what has gone or is a zombie
(a zombie runs nothing), so a test never trips over a process that ended at the wrong moment.
"""

from __future__ import annotations

import psutil


def _cmdline(p: psutil.Process) -> list[str] | None:
    try:
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p.cmdline()
    except psutil.Error:  # gone, zombie, or not ours to read
        return None


def snapshot(below: int | None = None) -> list[tuple[psutil.Process, str]]:
    """(process, command line) of every live process, or of every live descendant of pid `below`."""
    try:
        procs = psutil.Process(below).children(recursive=True) if below else list(psutil.process_iter())
    except psutil.Error:  # `below` itself has gone
        return []
    out = []
    for p in procs:
        cmd = _cmdline(p)
        if cmd:
            out.append((p, " ".join(cmd)))
    return out


def mentioning(*texts: str, below: int | None = None) -> list[psutil.Process]:
    """Live processes whose command line holds every one of `texts`."""
    return [p for p, cmd in snapshot(below) if all(t in cmd for t in texts)]


def gone(p: psutil.Process) -> bool:
    """Exited (a zombie waiting for a reaper counts: it runs nothing)."""
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
