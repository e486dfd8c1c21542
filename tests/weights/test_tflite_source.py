"""A `.tflite` MobileNet v1 as a weight source: TF's real int8 model, and float files edgekit writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.bundle.manifest import read_manifest, sha256_file
from edgekit.config import WeightsRequest
from edgekit.errors import ModelFileError
from tests.conftest import run_cli
from tests.weights.conftest import error_line

pytestmark = pytest.mark.tf


def test_tf_int8_mobilenet_is_rebuilt_and_agrees_on_real_photos(shared_tflite, ants_bees):
    from edgekit.pipeline.weights import resolve, tflite

    src = resolve(str(shared_tflite), check_data=str(ants_bees / "val"))
    c = src.config
    assert (c.family, c.alpha, c.resolution, c.classes) == ("mobilenet_v1", 0.25, 128, 1001)
    # TF's uint8 input: (q - 128) / 128
    assert src.preprocessing.mean == (128.0,) * 3 and src.preprocessing.std == (128.0,) * 3
    assert src.labels[0] == "background" and src.labels[1].startswith("tench")
    w = src.extra["weights"]
    assert w["kind"] == "tflite" and w["sha256"] == sha256_file(shared_tflite)
    assert w["weights_dtype"] == "uint8" and w["normalisation_from"] == "input quantization"
    chk = w["check"]
    assert not chk["synthetic"] and chk["images"] == 64
    # The check is the rebuilt float model against the int8 file itself on real photos.
    assert chk["top1_agreement"] >= tflite.MIN_AGREEMENT
    print(f"rebuilt vs .tflite top-1 agreement on {chk['images']} ants/bees photos: {chk['top1_agreement']:.1%}")


def test_flags_that_contradict_the_tflite_are_refused(shared_tflite):
    from edgekit.pipeline.weights import resolve

    with pytest.raises(ModelFileError, match=r"α 0.25; --alpha asked for 0.5"):
        resolve(str(shared_tflite), WeightsRequest(alpha=0.5))
    with pytest.raises(ModelFileError, match=r"takes 128 px input; --resolution asked for 160"):
        resolve(str(shared_tflite), WeightsRequest(resolution=160))
    with pytest.raises(ModelFileError, match=r"has 1001 classes; 3 were asked for"):
        resolve(str(shared_tflite), WeightsRequest(classes=3))


def test_float_tflite_written_by_edgekit_rebuilds_exactly(tiny_bundle):
    """A float32 `.tflite` of the zoo MobileNet (BN folded by the converter) comes back as the zoo model
    with the same outputs as the float Keras model it was converted from."""
    import keras

    from edgekit.data.datasets import synthetic_images
    from edgekit.pipeline.weights import resolve

    m = read_manifest(tiny_bundle)
    f32 = next(e["file"] for e in m["models"] if e["precision"] == "float32")
    src = resolve(str(tiny_bundle / f32))
    assert (src.config.alpha, src.config.resolution, src.config.classes) == (0.25, 32, 3)
    assert src.extra["weights"]["normalisation_from"] == "metadata"
    assert src.preprocessing.to_dict()["mean"] == m["preprocessing"]["mean"]
    ref = keras.models.load_model(tiny_bundle / m["float_model"], compile=False)
    x = synthetic_images(8, src.preprocessing.to_dict(), seed=3).x
    a, b = ref.predict(x, verbose=0), src.keras_model.predict(x, verbose=0)
    assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(a).max())
    assert src.extra["weights"]["check"]["top1_agreement"] == 1.0
    # The int8 file (per-channel int8 weights): dequantized, the rebuilt model still follows the float one.
    i8 = next(e["file"] for e in m["models"] if e["precision"] == "int8")
    q = resolve(str(tiny_bundle / i8))
    w = q.extra["weights"]
    assert (w["weights_dtype"], w["weights_quantization"]) == ("int8", "per-channel")
    c = q.keras_model.predict(x, verbose=0)
    assert np.corrcoef(a.ravel(), c.ravel())[0, 1] > 0.8


def test_tflite_of_another_architecture_is_named(tmp_path):
    import keras

    from edgekit.converters import keras_tflite
    from edgekit.pipeline.weights import resolve

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(3)(x))
    with keras_tflite.saved_model(model) as saved:
        flat = keras_tflite.convert_saved_model(saved, "float32")
    p = tmp_path / "small.tflite"
    p.write_bytes(flat)
    with pytest.raises(ModelFileError, match="is not a MobileNet v1 classifier"):
        resolve(str(p))


def test_truncated_tflite_one_line_nothing_written(shared_tflite, tmp_path):
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(shared_tflite.read_bytes()[:40000])
    out = tmp_path / "out"
    proc = run_cli("export", "--weights", str(bad), "-o", str(out), check=False)
    assert proc.returncode == 4, proc.stderr
    assert "cut.tflite" in error_line(proc.stderr)
    assert not out.exists()


@pytest.mark.slow
def test_export_from_the_tf_tflite_makes_an_imagenet_bundle(shared_tflite, ants_bees, tmp_path):
    out = tmp_path / "b"
    proc = run_cli(
        "export", "--weights", str(shared_tflite), "--calibration", str(ants_bees / "val"),
        "--calibration-samples", "16", "-q", "float16", "-o", str(out), "--json",
    )  # fmt: skip
    doc = json.loads(proc.stdout)
    w = doc["source"]["weights"]
    assert w["kind"] == "tflite" and w["sha256"] == sha256_file(shared_tflite)
    assert w["check"]["data"].endswith("val") and not w["check"]["synthetic"]
    assert doc["preprocessing"]["mean"] == [128.0] * 3
    labels = (out / "labels.txt").read_text().splitlines()
    assert len(labels) == 1001 and labels[0] == "background"
    assert doc["model"]["alpha"] == 0.25 and doc["model"]["resolution"] == 128
