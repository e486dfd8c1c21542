"""Helpers shared by the benchmark scripts: machine facts and BENCHMARKS.md sections."""

from __future__ import annotations

import datetime as _dt
import platform
import re
import sys
from pathlib import Path

from edgekit.device_scripts import edgelib

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
HEADER = (
    "# edgekit benchmarks\n\n"
    "Each section is written by a script in `benchmarks/` and names the command that produced it. "
    "Figures are medians of many runs; comparisons are taken side by side in one run (interleaved), "
    "because absolute times on shared 2-core machines are noisy.\n"
)


def machine_line() -> str:
    cpu = edgelib.cpu_info()
    feats = ", ".join(k for k, v in cpu["simd"].items() if v) or "none recognised"
    return (
        f"CPU: {cpu['model']} ({cpu['machine']}, {cpu['cores']} cores); SIMD: {feats}; "
        f"Python {platform.python_version()}; {_dt.date.today().isoformat()}"
    )


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section between `<!-- begin NAME -->` and `<!-- end NAME -->`."""
    text = BENCHMARKS_MD.read_text(encoding="utf-8") if BENCHMARKS_MD.exists() else HEADER
    block = f"<!-- begin {name} -->\n{body.rstrip()}\n<!-- end {name} -->"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text, encoding="utf-8")


def command_line() -> str:
    module = Path(sys.argv[0]).resolve().relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
    return " ".join(["python -m", module, *sys.argv[1:]])
