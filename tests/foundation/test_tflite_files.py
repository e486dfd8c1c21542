"""Format-level checks: embedded metadata and structural validation of .tflite files."""

from __future__ import annotations

import pytest

from edgekit.converters import tflite_file, tflite_metadata
from edgekit.device_scripts import edgelib
from tests.conftest import REPO

SHARED_MODEL = REPO.parent / "shared" / "models" / "mobilenet_v1_0.25_128_quant.tflite"


def _model_bytes(bundle):
    return next(p for p in bundle.glob("*_int8.tflite")).read_bytes()


def test_embedded_labels_and_meta_survive_and_model_still_loads(tiny_bundle):
    data = _model_bytes(tiny_bundle)
    labels, meta = tflite_metadata.read(data)
    assert labels == (tiny_bundle / "labels.txt").read_text().split()
    assert meta["preprocessing"]["size"] == [32, 32]
    assert meta["output_kind"] == "logits"
    # the device side reads the same archive without edgekit
    m = edgelib.Model(data)
    assert m.labels == labels and m.meta["precision"] == "int8"
    # strip() gives the bare flatbuffer, and re-embedding is idempotent
    flat = tflite_metadata.strip(data)
    assert len(flat) < len(data)
    assert tflite_metadata.read(flat) == (None, None)
    assert tflite_metadata.embed(data, labels=labels, meta=meta) == data


def test_bare_flatbuffer_still_describes_its_io(tiny_bundle):
    flat = tflite_metadata.strip(_model_bytes(tiny_bundle))
    m = edgelib.Model(flat)
    assert m.input_shape == (1, 32, 32, 3)
    assert m.labels is None
    prep = edgelib.default_preprocessing(m)
    assert prep["size"] == [32, 32] and prep["source"] == "guessed"


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d[:10], "too small"),
        (lambda d: b"\0" * 4 + b"NOPE" + d[8:], "not a TFLite flatbuffer"),
        (lambda d: (len(d) + 100).to_bytes(4, "little") + d[4:], "outside its"),
        (lambda d: b"hello world, this is not a model at all", "not a TFLite flatbuffer"),
    ],
)
def test_structural_check_rejects_corrupt_files(tiny_bundle, mutate, fragment):
    with pytest.raises(tflite_file.NotTFLiteError) as exc:
        tflite_file.check_bytes(mutate(_model_bytes(tiny_bundle)), "m.tflite")
    assert fragment in str(exc.value)


def test_structural_check_accepts_real_models(tiny_bundle):
    files = sorted(tiny_bundle.glob("*.tflite"))
    assert [p.name.rsplit("_", 1)[-1] for p in files] == ["float32.tflite", "int8.tflite"]
    for p in files:
        assert tflite_file.check_file(p) == p.read_bytes()


def test_structural_check_accepts_tensorflows_own_model():
    """A model edgekit did not write: TF's ImageNet int8 MobileNet from ../shared."""
    path = SHARED_MODEL
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared real models folder, ../shared from the repository)")
    assert tflite_file.check_file(path) == path.read_bytes()


def test_standard_tflite_metadata_names_labels_and_normalisation(tiny_bundle):
    import struct

    md = tflite_metadata.read_standard_metadata(_model_bytes(tiny_bundle))
    assert md is not None and md[4:8] == b"M001"  # metadata_schema.fbs file identifier
    assert b"labels.txt" in md and b"edgekit_meta.json" in md
    # NormalizationOptions carry mean = std = 127.5 as float32 vectors
    assert md.count(struct.pack("<3f", 127.5, 127.5, 127.5)) >= 2
