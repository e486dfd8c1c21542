"""What edgekit or Keras saved, as weight sources: a bundle folder, a `.keras`, a whole-model `.h5`."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.bundle.manifest import read_manifest
from edgekit.errors import ModelFileError, UsageError

pytestmark = pytest.mark.tf


def test_bundle_keras_and_h5_models_are_sources(tiny_bundle, tmp_path):
    from edgekit.bundle.keras_model import load_keras
    from edgekit.data.datasets import synthetic_images
    from edgekit.pipeline.weights import resolve

    m = read_manifest(tiny_bundle)
    b = resolve(str(tiny_bundle))
    assert b.config.to_dict() == {k: m["model"][k] for k in b.config.to_dict()}
    assert b.labels == tuple((tiny_bundle / "labels.txt").read_text().split())
    assert b.preprocessing.to_dict() == m["preprocessing"] and b.extra["weights"]["kind"] == "bundle"
    ref = load_keras(tiny_bundle / m["float_model"])
    x = synthetic_images(4, m["preprocessing"], seed=1).x
    np.testing.assert_array_equal(b.keras_model.predict(x, verbose=0), ref.predict(x, verbose=0))
    h5 = tmp_path / "whole.h5"
    ref.save(h5)  # a whole model in Keras' legacy HDF5 format (not a weights-only file)
    for path in (tiny_bundle / m["float_model"], h5):
        s = resolve(str(path))
        assert (s.config.family, s.config.classes, s.config.resolution) == ("mobilenet_v1", 3, 32)
        np.testing.assert_allclose(s.keras_model.predict(x, verbose=0), ref.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(UsageError, match="--labels has 2 entries"):
        resolve(str(tiny_bundle), labels=("a", "b"))


def test_unknown_folders_and_files_are_named(tmp_path):
    from edgekit.pipeline.weights import resolve

    with pytest.raises(ModelFileError, match="neither a training run folder"):
        resolve(str(tmp_path))
    with pytest.raises(ModelFileError, match="does not exist"):
        resolve(str(tmp_path / "missing.keras"))
    odd = tmp_path / "w.bin"
    odd.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="unknown kind '.bin'"):
        resolve(str(odd))
