"""LocalTarget, the runner's result parsing and the model check, with real subprocesses."""

from __future__ import annotations

import sys

import pytest

from edgekit.devices.remote import parse_result, run_script
from edgekit.devices.resolve import resolve_device
from edgekit.devices.staging import prepare
from edgekit.devices.targets.base import CommandResult
from edgekit.errors import DeviceError, InputDataError, ModelFileError, UsageError
from tests.device.conftest import SCRIPTS, int8_model


def test_local_target_files_and_commands(tmp_path):
    t = resolve_device(None)
    assert t.name == "local" and t.describe()["kind"] == "local" and t.spec.python == sys.executable
    src = tmp_path / "a" / "f.txt"
    src.parent.mkdir()
    src.write_text("hi")
    t.push(str(src), str(tmp_path / "b" / "g.txt"))
    assert t.exists(str(tmp_path / "b" / "g.txt")) and not t.exists(str(tmp_path / "nope"))
    t.pull(str(tmp_path / "b" / "g.txt"), str(tmp_path / "c.txt"))
    assert (tmp_path / "c.txt").read_text() == "hi"
    t.push(str(src.parent), str(tmp_path / "tree"))
    assert (tmp_path / "tree" / "f.txt").is_file()
    seen = []
    code = (
        "import sys; print('out'); [print('progress: %d' % i, file=sys.stderr, flush=True) for i in range(3)]"
    )
    res = t.run([sys.executable, "-c", code], stream=seen.append)
    assert res.returncode == 0 and res.stdout.strip() == "out"
    assert seen == ["progress: 0", "progress: 1", "progress: 2"]


def test_local_target_timeout_stops_the_command():
    t = resolve_device("local")
    with pytest.raises(DeviceError, match="timed out"):
        t.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)


def test_parse_result_maps_exit_codes_and_crashes():
    ok = CommandResult(0, 'noise\n{"schema_version": 1, "kind": "x"}\n', "")
    assert parse_result(ok, "s.py", "local") == {"schema_version": 1, "kind": "x"}
    for code, cls in ((2, UsageError), (3, InputDataError), (4, ModelFileError), (6, DeviceError)):
        with pytest.raises(cls, match="^on pi: broken thing$"):
            parse_result(CommandResult(code, "", "INFO: x\nerror: broken thing\n"), "s.py", "pi")
    with pytest.raises(DeviceError, match=r"crashed on local \(SIGSEGV\)"):
        parse_result(CommandResult(-11, "", ""), "s.py", "local")
    with pytest.raises(DeviceError, match="printed no JSON"):
        parse_result(CommandResult(0, "hello\n", ""), "s.py", "local")
    with pytest.raises(KeyboardInterrupt):
        parse_result(CommandResult(130, "", "error: interrupted"), "s.py", "local")


def test_a_real_crash_is_contained(tmp_path):
    """A process that dies of SIGSEGV becomes one clear error, and this process lives on."""
    t = resolve_device("local")
    res = t.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    with pytest.raises(DeviceError, match="SIGSEGV"):
        parse_result(res, "profile_latency.py", t.name)


@pytest.mark.tf
def test_probe_contains_a_crashing_interpreter(tmp_path, bare_model):
    """modelcheck.probe runs the model in another process: a segfault there is a ModelFileError here."""
    from edgekit.bundle.modelcheck import probe

    crasher = tmp_path / "python-that-crashes"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crasher.chmod(0o755)
    with pytest.raises(ModelFileError, match="crashed the TFLite interpreter \\(SIGSEGV\\)"):
        probe(bare_model, python=str(crasher))
    info = probe(bare_model)
    assert info["kind"] == "probe" and info["model"]["input"]["dtype"] == "int8" and info["labels"] == 3


@pytest.mark.tf
def test_structural_checks_agree(bare_model, tmp_path):
    """edgelib repeats converters/tflite_file.py's check (device scripts cannot import edgekit)."""
    from edgekit.converters.tflite_file import NotTFLiteError, check_bytes
    from edgekit.device_scripts import edgelib

    data = bare_model.read_bytes()
    samples = [
        data,
        data[:10],
        data[:100],
        b"x" * 64,
        data[:4] + b"ABCD" + data[8:],
        b"\xff\xff\xff\x7fTFL3" + data[8:],
    ]
    for sample in samples:
        desktop = device = True
        try:
            check_bytes(sample)
        except NotTFLiteError:
            desktop = False
        try:
            edgelib.check_tflite_bytes(sample, "m")
        except edgelib.ModelFailure:
            device = False
        assert desktop == device


@pytest.mark.tf
def test_prepare_and_run_script_locally(tiny_bundle):
    t = resolve_device("local")
    model = int8_model(tiny_bundle)
    paths = prepare(t, [str(model)])
    assert paths.scripts == str(SCRIPTS.resolve()) and paths.on_target(model) == str(model.resolve())
    steps = []
    doc = run_script(t, paths, "profile_latency.py", ["--model", paths.on_target(model), "--runs", "2",
                                                      "--min-seconds", "0"], progress=steps.append)  # fmt: skip
    assert doc["kind"] == "profile" and steps == ["[1/1] threads=1 batch=1"]
    with pytest.raises(ModelFileError, match="does not exist"):
        run_script(t, paths, "profile_latency.py", ["--model", "/nonexistent.tflite"])


def test_unknown_device_points_to_devices_add():
    with pytest.raises(UsageError, match="edgekit devices add"):
        resolve_device("raspberrypi")
