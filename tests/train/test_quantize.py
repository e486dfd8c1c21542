"""Selective quantization on a model built to quantize badly: an output layer with outlier activations."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.data import datasets as D
from edgekit.device_scripts import edgelib
from edgekit.pipeline import quantize as Q

pytestmark = [pytest.mark.tf, pytest.mark.slow]

PREP = {"size": [16, 16], "mean": [127.5] * 3, "std": [127.5] * 3}
OUTLIER = -100_000.0  # the 11th logit: int8 steps of ~OUTLIER/255 swallow the ten real logits
MAX_DROP = 5.0  # the budget the selective search must meet (full int8 loses far more, see below)


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory):
    """A small CNN trained on scikit-learn's real 8x8 digits, then given an 11th output unit that is
    always about -100000: it never wins, but one per-tensor int8 scale for all 11 logits is then ~390
    per step, so every one of the ten real logits (tens at most) rounds to the same int8 value. Full
    int8 cannot tell the classes apart on any CPU: it is structurally broken, not a few points off.
    Keeping that layer in float repairs it, which the search must find."""
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
    # the outlier unit reuses class 0's weights (a real weight range, so per-channel scales stay sane)
    head.set_weights([np.concatenate([w, w[:, :1]], 1), np.append(b, OUTLIER)])
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
    q = edgelib.Model(m["int8"]).predict(m["x"])
    rep = Q.int8_report(m["float_out"], q, m["y"], "digits")
    assert rep["float_top1"] >= 0.8  # the float model learned the digits
    # structural damage: the ten real logits collapse onto one int8 value in every image, so int8
    # predicts the first class always (argmax of a tie) and scores exactly that class's share
    assert np.ptp(q[:, :10], axis=1).max() == 0
    assert (q.argmax(1) == 0).all() and rep["int8_top1"] == round(float(np.mean(m["y"] == 0)), 4)
    assert rep["drop_points"] > MAX_DROP


def test_selective_quantization_fits_budget(outlier_model):
    m = outlier_model
    flat, rep = Q.fit_budget(
        m["saved"], m["int8"], calib=m["calib"], x_eval=m["x"], y_eval=m["y"], float_out=m["float_out"],
        budget=Q.Budget(max_drop=MAX_DROP),
    )  # fmt: skip
    # what the search guarantees: over budget, so it searched; it stopped at the first step within the
    # budget; the model it ships is that step's, never worse than full int8
    assert rep["full_int8"]["drop_points"] > MAX_DROP and rep["selective"] is True
    assert rep["budget_met"] is True and rep["drop_points"] <= MAX_DROP < rep["full_int8"]["drop_points"]
    assert all(s["drop_points"] > MAX_DROP for s in rep["steps"][:-1])
    assert rep["steps"][-1]["drop_points"] == rep["drop_points"]
    assert rep["steps"][-1]["float_layers"] == len(rep["float_layers"]) < len(rep["ranking"])
    # the collapsed layer cannot stay int8 in any model within budget: it is among those kept in float
    assert any(layer["op"] == "FULLY_CONNECTED" for layer in rep["float_layers"])
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
