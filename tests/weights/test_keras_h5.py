"""Keras' published MobileNet v1 weight files (legacy Keras-2 `.h5`), and `--weights imagenet`.

The files are written here in exactly the published layout from keras.applications.MobileNet
(weights=None): nothing is downloaded. Keras' own MobileNet loading the same file is the reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.config import WeightsRequest
from edgekit.errors import ModelFileError, UsageError
from tests.conftest import run_cli
from tests.weights.conftest import error_line
from tests.weights.legacy_h5 import randomise_batchnorm, write_legacy_h5

pytestmark = pytest.mark.tf

RES = 32


def _keras_mobilenet(top: bool, alpha: float = 0.25, classes: int = 7, res: int = RES):
    import keras

    return keras.applications.MobileNet(
        input_shape=(res, res, 3), alpha=alpha, weights=None, include_top=top, classes=classes,
        pooling=None if top else "avg",
    )  # fmt: skip


@pytest.fixture(scope="module")
def legacy_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("h5")
    out = {}
    for top in (True, False):
        km = _keras_mobilenet(top)
        randomise_batchnorm(km, seed=int(top))
        out[top] = write_legacy_h5(km, d / f"mobilenet_2_5_{RES}_tf{'' if top else '_no_top'}.h5")
    return out


@pytest.mark.parametrize("top", [True, False], ids=["top", "no_top"])
def test_zoo_mobilenet_from_a_legacy_file_matches_keras_own_model(legacy_files, top):
    import keras

    from edgekit.pipeline.weights import feature_tensor, resolve

    path = legacy_files[top]
    ref = _keras_mobilenet(top)
    ref.load_weights(path)  # Keras' own (order-based) legacy loader
    purpose = "classifier" if top else "backbone"
    src = resolve(str(path), WeightsRequest(classes=None if top else 4), purpose=purpose)
    assert (src.config.alpha, src.config.resolution) == (0.25, RES)
    x = np.random.default_rng(1).uniform(-1, 1, (4, RES, RES, 3)).astype(np.float32)
    if top:  # Keras ends in softmax after `conv_preds`; the zoo's logits are that layer
        want = keras.Model(ref.input, ref.get_layer("reshape_2").output).predict(x, verbose=0)
        got = src.keras_model.predict(x, verbose=0)
        assert src.config.classes == 7
    else:
        want = ref.predict(x, verbose=0)
        got = keras.Model(src.keras_model.input, feature_tensor(src.keras_model)).predict(x, verbose=0)
        assert src.extra["weights"]["head"].startswith("new")
    assert np.abs(want).max() > 0.05  # the randomised BN statistics reach the output
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert src.preprocessing.mean == (127.5,) * 3  # Keras MobileNet: x / 127.5 - 1


def test_h5_mismatches_are_named(legacy_files, tmp_path):
    from edgekit.pipeline.weights import resolve

    top = legacy_files[True]
    with pytest.raises(ModelFileError, match=r"α 0.25; --alpha asked for 0.5"):
        resolve(str(top), WeightsRequest(alpha=0.5))
    with pytest.raises(ModelFileError, match=r"has 7 classes; 3 were asked for"):
        resolve(str(top), WeightsRequest(classes=3))
    with pytest.raises(ModelFileError, match=r"MobileNet v1 only; --model asked for resnet18"):
        resolve(str(top), WeightsRequest(family="resnet18"))
    with pytest.raises(ModelFileError, match=r"no classifier \(a no_top file\)"):
        resolve(str(legacy_files[False]))
    cut = tmp_path / "cut.h5"
    cut.write_bytes(top.read_bytes()[:20000])
    with pytest.raises(ModelFileError, match="cut.h5"):
        resolve(str(cut))


def test_weights_of_another_architecture_name_missing_layers(tmp_path):
    import keras

    from edgekit.pipeline.weights import resolve

    inp = keras.Input((32, 32, 3))
    m = keras.Model(inp, keras.layers.Dense(3, name="head")(keras.layers.Flatten()(keras.layers.Conv2D(4, 3, name="c1")(inp))))
    p = write_legacy_h5(m, tmp_path / "other.h5")
    with pytest.raises(ModelFileError, match=r"not a Keras MobileNet v1 weight file: layers conv1, conv1_bn"):
        resolve(str(p))


def test_unpublished_alpha_or_resolution_names_the_nearest_files():
    from edgekit.pipeline.weights import imagenet

    with pytest.raises(UsageError) as e:
        imagenet.mobilenet_file(0.35, 150)
    msg = str(e.value)
    assert "no MobileNet v1 ImageNet weights for α 0.35 at 150 px" in msg
    assert "mobilenet_2_5_160_tf.h5" in msg and "mobilenet_5_0_" in msg
    assert imagenet.mobilenet_file(0.5, 160).url.endswith("/mobilenet/mobilenet_5_0_160_tf.h5")


def test_imagenet_offline_names_the_file_and_writes_nothing(weights_env, tmp_path):
    """A closed loopback port stands in for 'no network': the download fails at once."""
    out = tmp_path / "bundle"
    proc = run_cli(
        "export", "--model", "mobilenet", "--alpha", "0.25", "--resolution", "128", "--weights", "imagenet",
        "-o", str(out), check=False, env=weights_env,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    line = error_line(proc.stderr)
    assert "mobilenet_2_5_128_tf.h5" in line
    assert weights_env["EDGEKIT_WEIGHTS_URL"] + "mobilenet_2_5_128_tf.h5" in line
    assert "--weights PATH/mobilenet_2_5_128_tf.h5" in line
    assert not out.exists()
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())  # no partial download left behind


def test_unpublished_resolution_stops_before_any_download(weights_env):
    from edgekit.pipeline.weights import resolve

    with pytest.raises(UsageError, match="nearest: mobilenet_5_0_128_tf.h5"):
        resolve("imagenet", WeightsRequest(family="mobilenet_v1", alpha=0.5, resolution=96))
    cache = Path(weights_env["EDGEKIT_WEIGHTS_DIR"])
    assert not cache.exists()  # stopped before any download was tried


@pytest.mark.slow
def test_export_imagenet_from_the_cache_is_an_imagenet_classifier(weights_env, tmp_path):
    """The cached published file (written here in its layout) makes a bundle with ImageNet's labels."""
    from edgekit.bundle.manifest import sha256_file

    cache = Path(weights_env["EDGEKIT_WEIGHTS_DIR"])
    cache.mkdir(parents=True)
    km = _keras_mobilenet(True, classes=1000, res=128)
    randomise_batchnorm(km)
    f = write_legacy_h5(km, cache / "mobilenet_2_5_128_tf.h5")
    out = tmp_path / "bundle"
    proc = run_cli(
        "export", "--alpha", "0.25", "--resolution", "128", "--weights", "imagenet", "-q", "float16",
        "--calibration-samples", "8", "-o", str(out), "--json", env=weights_env,
    )  # fmt: skip
    doc = json.loads(proc.stdout)
    w = doc["source"]["weights"]
    assert w["kind"] == "keras_h5" and w["spec"] == "imagenet" and w["sha256"] == sha256_file(f)
    assert w["url"] == weights_env["EDGEKIT_WEIGHTS_URL"] + "mobilenet_2_5_128_tf.h5"
    labels = (out / "labels.txt").read_text().splitlines()
    assert len(labels) == 1000 and labels[0].startswith("tench") and labels[-1].startswith("toilet tissue")
    assert doc["num_classes"] == 1000 and doc["preprocessing"]["mean"] == [127.5] * 3
