"""The fuzz test: seeded structural (flatbuffer schema) and byte-level mutations of real int8 models,
through everything that opens a model. No command may end by a signal or a traceback.

Bounded in time: the tiny hand-built int8 classifier takes most mutations (milliseconds each); TF's
int8 MobileNet from ../shared takes fewer; the CLI (a second per command) runs on a handful, among
them mutations known to crash the interpreter. EDGEKIT_FUZZ_SEED picks another seed to explore.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, run_cli
from tests.hardening.conftest import SHARED_MODEL, issue_repro, reshape_crash
from tests.hardening.mutate import mutations
from tests.hardening.tflite_build import classifier

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("EDGEKIT_FUZZ_SEED", "15"))


def _harness(seed: int, n: int, out, base=None) -> dict:
    argv = [sys.executable, "-m", "tests.hardening.fuzz_harness", str(seed), str(n), str(out)]
    proc = subprocess.run(
        argv + ([str(base)] if base else []), capture_output=True, text=True, timeout=300, cwd=REPO,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    tried = [ln for ln in proc.stdout.splitlines() if ln.startswith("trying ")]
    assert proc.returncode == 0, (
        f"fuzz harness exited {proc.returncode} (seed {seed}); last model: {tried[-1:] or 'none'}\n"
        f"{proc.stderr[-3000:]}"
    )
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["unexpected"] == [], summary["unexpected"][:5]
    return summary


def test_fuzz_tiny_int8_model(tmp_path):
    s = _harness(SEED, 240, tmp_path / "tiny")
    assert s["models"] == 240 and s["refused"] + s["loaded"] == 240
    assert s["refused"] > 0 and s["loaded"] > 0  # the mutations exercise both ways out
    assert s["crashed_in_probe"] >= 1  # the known crasher killed a probe, and the rest were still probed


def test_fuzz_tf_mobilenet(tmp_path):
    if not SHARED_MODEL.is_file():
        pytest.skip(f"{SHARED_MODEL} is absent")
    s = _harness(SEED, 40, tmp_path / "mobilenet", SHARED_MODEL)
    # whether a mutation kills the interpreter or makes it throw (std::bad_alloc) depends on the CPU:
    # the guarantee is that every one ends refused in one line or loaded, and some are refused
    assert s["refused"] + s["loaded"] == 40 and s["refused"] >= 1


def test_fuzz_through_the_cli(tmp_path, images):
    """eval and profile, as a user runs them, on known crashers and a few random mutations."""
    cases = {"reshape_crash": reshape_crash(classifier())}
    if SHARED_MODEL.is_file():
        cases["issue_repro"] = issue_repro(SHARED_MODEL.read_bytes())
    for name, data in mutations(classifier(), 2, SEED + 1):
        cases[name.split(":")[0]] = data
    for name, data in cases.items():
        p = tmp_path / f"{name}.tflite"
        p.write_bytes(data)
        for cmd in (
            ["eval", str(p), "--data", str(images), "--no-write"],
            ["profile", str(p), "--threads", "1", "--batch", "1", "--runs", "3", "--warmup", "1", "--min-seconds", "0"],
        ):
            proc = run_cli(*cmd, check=False)
            assert proc.returncode >= 0 and proc.returncode not in (1, 134, 139), (name, cmd, proc.stderr)
            assert "Traceback" not in proc.stderr, (name, proc.stderr)
