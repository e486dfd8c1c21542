"""Selective quantization on a model built to quantize badly: an output layer with outlier activations."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.data import datasets as D
from edgekit.device_scripts import edgelib
from edgekit.pipeline import quantize as Q

pytestmark = [pytest.mark.tf, pytest.mark.slow]

PREP = {"size": [16, 16], "mean": [127.5] * 3, "std": [127.5] * 3}


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory):
    """A small CNN trained on scikit-learn's real 8x8 digits, then given an 11th output unit that is
    always about -4000: it never wins, but one per-tensor int8 scale for all 11 logits leaves the ten
    real ones a few quantization steps, so full int8 loses many points. Keeping that one layer in float
    repairs it, which the search must find."""
    import keras

    from edgekit.converters import keras_tflite

    keras.utils.set_random_seed(0)
    ds = D.open_dataset("builtin:digits")
    train, val = D.stratified_split(ds, 0.25, seed=0)
    xt = D.decode(train, PREP)
    xv = D.decode(val, PREP, limit=300, seed=0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)  # digits need their layout: global pooling alone learns poorly
    logits = keras.layers.Dense(10, name="logits")(x)
    clean = keras.Model(inp, logits)
    clean.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clean.fit(xt.x, xt.y, epochs=15, batch_size=32, verbose=0)
    w, b = clean.get_layer("logits").get_weights()
    head = keras.layers.Dense(11, name="logits_outlier")
    model = keras.Model(inp, head(clean.layers[-2].output))
    head.set_weights([np.concatenate([w, np.zeros((w.shape[0], 1), np.float32)], 1), np.append(b, -4000.0)])
    calib = xt.x[:64]
    saved = tmp_path_factory.mktemp("outlier") / "sm"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    int8 = keras_tflite.convert_saved_model(
        str(saved),
        "int8",
        representative=lambda: (calib[i : i + 1] for i in range(len(calib))),
        io_type="int8",
    )
    float_out = np.asarray(model.predict(xv.x, verbose=0), np.float32)
    return {"saved": str(saved), "int8": int8, "calib": calib, "x": xv.x, "y": xv.y, "float_out": float_out}


def test_full_int8_is_badly_hurt(outlier_model):
    m = outlier_model
    rep = Q.int8_report(m["float_out"], edgelib.Model(m["int8"]).predict(m["x"]), m["y"], "digits")
    assert rep["float_top1"] >= 0.8  # the float model is good
    assert rep["drop_points"] >= 10  # int8 is not


def test_selective_quantization_fits_budget(outlier_model):
    m = outlier_model
    flat, rep = Q.fit_budget(
        m["saved"], m["int8"], calib=m["calib"], x_eval=m["x"], y_eval=m["y"], float_out=m["float_out"],
        budget=Q.Budget(max_drop=2.0),
    )  # fmt: skip
    assert rep["full_int8"]["drop_points"] >= 10
    assert rep["budget_met"] is True and rep["selective"] is True
    assert rep["drop_points"] <= 2.0 < rep["full_int8"]["drop_points"]
    assert any(layer["op"] == "FULLY_CONNECTED" for layer in rep["float_layers"])
    assert len(rep["float_layers"]) < len(rep["ranking"])  # not simply everything in float
    assert rep["steps"][-1]["float_layers"] == len(rep["float_layers"])
    assert rep["size_bytes"] == len(flat) and rep["host_latency_ms"] > 0
    # the debugger's selective model has float32 I/O, and the report says so
    model = edgelib.Model(flat)
    assert model.input["dtype"] == np.float32 and model.output["dtype"] == np.float32
    assert rep["io"] == "float32" and "float32" in rep["io_note"]
    acc = Q.accuracy(model.predict(m["x"]), m["y"])
    assert (Q.accuracy(m["float_out"], m["y"]) - acc) * 100 == pytest.approx(rep["drop_points"], abs=0.01)


def test_unreachable_budget_is_reported_honestly(outlier_model):
    m = outlier_model
    _, rep = Q.fit_budget(
        m["saved"], m["int8"], calib=m["calib"], x_eval=m["x"], y_eval=m["y"], float_out=m["float_out"],
        budget=Q.Budget(max_drop=-50.0, max_steps=2),
    )  # fmt: skip
    assert rep["budget_met"] is False
    assert "budget not met" in rep["note"] and len(rep["steps"]) == 2


def test_within_budget_keeps_full_int8(outlier_model):
    m = outlier_model
    flat, rep = Q.fit_budget(
        m["saved"], m["int8"], calib=m["calib"], x_eval=m["x"], y_eval=m["y"], float_out=m["float_out"],
        budget=Q.Budget(max_drop=100.0),
    )  # fmt: skip
    assert flat is m["int8"] and rep["budget_met"] is True and rep["selective"] is False
    assert rep["float_layers"] == [] and rep["steps"] == []
