"""H1, M4, L4: a model that crashes the interpreter, has no inputs/outputs, is not a classifier or
outputs NaN gets one line and exit 4 from every command that opens it, never a segfault."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import run_cli
from tests.hardening.conftest import (
    assert_one_line_error,
    issue_repro,
    make_bundle,
    reshape_crash,
    run_py,
    shared_model,
)
from tests.hardening.tflite_build import classifier


def _eval(model, images, *extra):
    return run_cli("eval", str(model), "--data", str(images), "--no-write", *extra, check=False)


def test_issue_repro_segfaulting_mobilenet_is_refused_by_eval(tmp_path, images):
    """TF's int8 MobileNet with operator 11's second input set to -1: profile said exit 4, eval died."""
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(issue_repro(shared_model().read_bytes()))
    raw = run_py("import sys; from edgekit.device_scripts import edgelib; edgelib.Model(open(sys.argv[1], 'rb').read())", str(bad))  # fmt: skip
    assert raw.returncode != 0, "the corrupted model must not load in a bare interpreter"
    line = assert_one_line_error(_eval(bad, images), 4, str(bad))
    # the same bytes segfault the interpreter on some CPUs and make it throw std::bad_alloc on others:
    # either way eval names the file and says what happened, in one line, with exit 4
    if raw.returncode < 0:
        assert "crashed the TFLite interpreter (SIGSEGV)" in line, line
    else:
        assert "the interpreter cannot load it" in line, line


def test_tiny_crashing_model_is_refused_by_eval_and_in_a_bundle_with_fresh_checksums(tmp_path, images):
    data = reshape_crash(classifier())
    bare = tmp_path / "crash.tflite"
    bare.write_bytes(data)
    assert run_py("import sys; from edgekit.device_scripts import edgelib; edgelib.Model(open(sys.argv[1], 'rb').read())", str(bare)).returncode < 0  # fmt: skip
    assert_one_line_error(_eval(bare, images), 4, "SIGSEGV")
    # a bundle whose sha256s were recomputed for the crashing model: checksums prove nothing about safety
    b = make_bundle(tmp_path / "b", model=data)
    sha = hashlib.sha256(data).hexdigest()
    assert json.loads((b / "manifest.json").read_text())["files"]["tiny_int8.tflite"]["sha256"] == sha
    assert_one_line_error(_eval(b, images), 4, "SIGSEGV")


@pytest.mark.parametrize(
    "kind, words",
    [
        ({"inputs": 0}, "no input"),
        ({"outputs": 0}, "no output"),
        ({"inputs": 2}, "2 inputs"),
        ({"outputs": 2}, "2 outputs"),
    ],
)
def test_models_that_are_not_one_input_one_output_classifiers(tmp_path, images, kind, words):
    m = tmp_path / "m.tflite"
    m.write_bytes(classifier(**kind))
    assert_one_line_error(_eval(m, images), 4, words)


def test_nan_outputs_are_refused_on_desktop_and_device(tmp_path, images):
    m = tmp_path / "nan.tflite"
    m.write_bytes(classifier(dtype="float32", nan=True))
    assert_one_line_error(_eval(m, images), 4, "NaN")
    from tests.device.conftest import run_script

    proc = run_script("eval_images.py", "--model", str(m), "--data", str(images), check=False)
    assert proc.returncode == 4 and "NaN" in proc.stderr and "Traceback" not in proc.stderr


def test_device_script_refuses_a_two_input_model(tmp_path, images):
    from tests.device.conftest import run_script

    m = tmp_path / "two.tflite"
    m.write_bytes(classifier(inputs=2))
    proc = run_script("eval_images.py", "--model", str(m), "--data", str(images), check=False)
    assert proc.returncode == 4 and "2 inputs" in proc.stderr


def test_export_verification_refuses_a_crashing_conversion_without_dying(images):
    """What export's and convert's verification do with converter output that crashes the interpreter."""
    code = """
import sys, numpy as np
from tests.hardening.conftest import reshape_crash
from tests.hardening.tflite_build import classifier
from edgekit.data.datasets import ImageBatch
from edgekit.errors import EdgekitError
from edgekit.pipeline.export import verify
x = np.zeros((2, 16, 16, 3), np.float32)
calib = ImageBatch(x, (), (), "test")
try:
    verify(np.zeros((2, 3), np.float32), reshape_crash(classifier()), calib)
except EdgekitError as exc:
    print("refused:", exc.exit_code, exc)
"""
    proc = run_py(code)
    assert proc.returncode == 0, proc.stderr
    assert "refused: 4" in proc.stdout and "SIGSEGV" in proc.stdout


def test_corrupt_shape_is_refused_before_memory_is_taken(tmp_path, images):
    """A tensor shape of 2^31 x 4 made the probe take 8 GB; now refused from the declared shapes."""
    from tests.hardening.tflite_build import pack, parse

    m = parse(classifier())
    next(t for t in m.subgraphs[0].tensors if t.name == b"mean").shape = [2**31 - 1, 1, 1, 4]
    bad = tmp_path / "huge.tflite"
    bad.write_bytes(pack(m))
    assert_one_line_error(_eval(bad, images), 4, "GiB of tensors", "EDGEKIT_MAX_TENSOR_BYTES")


def test_report_shows_indices_for_non_utf8_labels(tmp_path):
    from edgekit.results.report.detail import _bundle_labels

    (tmp_path / "labels.txt").write_bytes("caf\xe9\nb\n".encode("latin-1"))
    assert _bundle_labels({"bundle": str(tmp_path)}, None, 2) is None
