"""Child processes that end with edgekit: a `kill -9` of the CLI must not leave a profile or an ssh behind.

Linux: PR_SET_PDEATHSIG (prctl through ctypes) makes the kernel SIGKILL the child when the thread that
started it dies, however it dies; elsewhere the children's own pipes closing is what stops them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # resolved here, before any fork: the child only calls it


def die_with_parent(*, own_group: bool = False):
    """A `preexec_fn` for subprocess.Popen: SIGKILL the child when edgekit dies; with `own_group`, the
    child leads a process group of its own (so it can be stopped with everything it started)."""
    parent = os.getpid()

    def setup() -> None:
        if own_group:
            os.setpgid(0, 0)
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # edgekit died before the death signal was armed
            os._exit(1)

    return setup
