"""Format-level checks: embedded metadata and structural validation of .tflite files."""

from __future__ import annotations

import pytest

from edgekit.converters import tflite_file, tflite_metadata
from edgekit.device_scripts import edgelib


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
    for p in tiny_bundle.glob("*.tflite"):
        tflite_file.check_file(p)


def test_standard_tflite_metadata_names_labels_and_normalisation(tiny_bundle):
    import struct

    md = tflite_metadata.read_standard_metadata(_model_bytes(tiny_bundle))
    assert md is not None and md[4:8] == b"M001"  # metadata_schema.fbs file identifier
    assert b"labels.txt" in md and b"edgekit_meta.json" in md
    # NormalizationOptions carry mean = std = 127.5 as float32 vectors
    assert md.count(struct.pack("<3f", 127.5, 127.5, 127.5)) >= 2
