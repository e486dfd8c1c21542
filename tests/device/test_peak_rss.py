"""Peak RSS is the script's own, not inherited from a large parent across fork+exec."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "device_scripts"


def test_peak_rss_is_not_the_parents():
    ballast = bytearray(300 * 2**20)  # make this (parent) process large: ~300 MB resident
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    code = f"import sys; sys.path.insert(0, {str(SCRIPTS)!r}); import edgelib; print(edgelib.peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 1 < child < 150, child
    del ballast
