"""Issue 15 on this machine: a kill -9 of the CLI leaves no orphan (L7); messages are one clear line (L6)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from edgekit.bundle.atomic import write_json_atomic
from edgekit.bundle.manifest import read_manifest, sha256_file
from edgekit.errors import EdgekitError
from tests.conftest import run_cli
from tests.device.conftest import int8_model
from tests.procs import gone, mentioning

FAST = ("--runs", "3", "--warmup", "1", "--min-seconds", "0")


@pytest.mark.tf
def test_kill_9_of_the_cli_stops_the_local_profile(tiny_bundle):
    """L7: profile_latency.py used to run on as an orphan after the CLI was killed."""
    args = ["profile", str(tiny_bundle), "--runs", "100000000", "--min-seconds", "600"]
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    script = None
    try:
        deadline = time.monotonic() + 120
        while script is None and time.monotonic() < deadline and proc.poll() is None:
            for child in mentioning("profile_latency.py", below=proc.pid):
                script = child
            time.sleep(0.1)
        assert script is not None, "profile_latency.py never started"
        time.sleep(0.5)  # well into its timed loop
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while not gone(script) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not gone(script):
        script.kill()
        pytest.fail("profile_latency.py ran on after the CLI was killed")


def test_messages_with_newlines_are_one_line():
    """L6: TFLite's errors carry newlines; every edgekit error is one line."""
    exc = EdgekitError("x.tflite cannot be loaded: subgraph.cc:1965 bad.\nNode number 3 (CONV_2D) failed to prepare.\n")
    assert str(exc) == "x.tflite cannot be loaded: subgraph.cc:1965 bad. Node number 3 (CONV_2D) failed to prepare."


def _broken_at_prepare(src, dst):
    """A real int8 model whose first weight tensor claims more bytes than its buffer holds."""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(src.read_bytes(), 0))
    g = m.subgraphs[0]
    t = g.tensors[g.operators[0].inputs[1]]
    t.shape = np.array([*t.shape[:-1], t.shape[-1] + 1], dtype=np.int32)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    dst.write_bytes(bytes(b.Output()))
    return dst


@pytest.mark.tf
@pytest.mark.slow
def test_a_tflite_error_is_printed_on_one_line(tiny_bundle, digits_dir, tmp_path):
    bad = _broken_at_prepare(int8_model(tiny_bundle), tmp_path / "bad.tflite")
    proc = run_cli("eval", str(bad), "--data", str(digits_dir), "--no-write", check=False)
    assert proc.returncode == 4, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


@pytest.mark.tf
def test_non_utf8_labels_in_profile_are_a_clean_error(tiny_bundle, tmp_path):
    """L6: used to be exit 6 (device) with a raw UnicodeDecodeError from the device script."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    labels = bundle / "labels.txt"
    labels.write_bytes("caf\xe9\nna\xefve\nthird\n".encode("latin-1"))
    m = read_manifest(bundle)
    m["files"]["labels.txt"] = {"sha256": sha256_file(labels), "size_bytes": labels.stat().st_size}
    write_json_atomic(bundle / "manifest.json", m)
    proc = run_cli("profile", str(bundle), *FAST, check=False)
    assert proc.returncode in (3, 4), proc.stderr  # bad input (device script) or a bad bundle (manifest check)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "UTF-8" in lines[0] and "labels.txt" in lines[0], proc.stderr
    assert "UnicodeDecodeError" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.tf
@pytest.mark.slow
def test_keras_safe_mode_refusal_says_why(digits_dir, tmp_path):
    """L6: a .keras with a Lambda layer is refused by Keras' safe mode; the message says so."""
    code = (
        "import keras\n"
        "inp = keras.Input((32, 32, 3))\n"
        "x = keras.layers.Lambda(lambda t: t * 2.0)(inp)\n"
        "x = keras.layers.GlobalAveragePooling2D()(x)\n"
        "out = keras.layers.Dense(3, activation='softmax')(x)\n"
        f"keras.Model(inp, out).save({str(tmp_path / 'lam.keras')!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})  # fmt: skip
    proc = run_cli("eval", str(tmp_path / "lam.keras"), "--data", str(digits_dir), check=False)
    assert proc.returncode == 4, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "Lambda" in line and "safe" in line.lower(), line
    assert "Traceback" not in proc.stderr
    json.dumps(line)  # one printable line
