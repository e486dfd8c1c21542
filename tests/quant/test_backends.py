"""Both int8 back ends on a tiny trained model: the converter and the LiteRT Quantizer (ai-edge-quantizer)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.data import datasets as D
from edgekit.device_scripts import edgelib

tq = pytest.importorskip("edgekit.converters.tflite_quantize")
pytest.importorskip("ai_edge_quantizer", reason="ai-edge-quantizer not installed (pip install 'edgekit[quantizer]')")

pytestmark = [pytest.mark.tf, pytest.mark.slow]

PREP = {"size": [16, 16], "mean": [127.5] * 3, "std": [127.5] * 3}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small CNN (conv, depthwise, dense) trained for a few seconds on scikit-learn's real digits."""
    import keras

    from edgekit.converters import keras_tflite

    keras.utils.set_random_seed(0)
    ds = D.open_dataset("builtin:digits")
    train, val = D.stratified_split(ds, 0.25, seed=0)
    xt = D.decode(train, PREP, limit=700, seed=0)
    xv = D.decode(val, PREP, limit=200, seed=0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, activation="relu6", padding="same")(inp)
    x = keras.layers.DepthwiseConv2D(3, activation="relu6", padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 1, activation="relu6")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inp, keras.layers.Dense(10)(x))
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(xt.x, xt.y, epochs=5, batch_size=32, verbose=0)
    calib = xt.x[:64]
    with keras_tflite.saved_model(model) as saved:
        f32 = keras_tflite.convert_saved_model(saved, "float32")
        conv = keras_tflite.convert_saved_model(
            saved, "int8", representative=lambda: (calib[i : i + 1] for i in range(len(calib)))
        )
    return {"f32": f32, "conv": conv, "calib": calib, "x": xv.x, "y": xv.y, "float_out": edgelib.Model(f32).predict(xv.x)}


def _ops(model: bytes) -> list[tuple[str, type]]:
    """(op name, output dtype) of every op, read without the XNNPACK delegate (which hides them)."""
    interp = tq._interpreter(model)
    d = interp.get_tensor_details()
    return [(o["op_name"], d[o["outputs"][0]]["dtype"]) for o in interp._get_ops_details()]


COMPUTE = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


def _agreement(a, b) -> float:
    return float(np.mean(a.argmax(-1) == b.argmax(-1)))


def test_litert_int8_follows_float_like_the_converter(tiny):
    q = tq.quantize(tiny["f32"], tq.Recipe(), tiny["calib"])
    m = edgelib.Model(q)
    assert m.input["dtype"] == np.int8 and m.output["dtype"] == np.int8
    compute = [dt for op, dt in _ops(q) if op in COMPUTE]
    assert len(compute) == 4 and all(dt == np.int8 for dt in compute)  # full integer
    f_acc = float(np.mean(tiny["float_out"].argmax(-1) == tiny["y"]))
    assert f_acc >= 0.8
    lit = m.predict(tiny["x"])
    conv = edgelib.Model(tiny["conv"]).predict(tiny["x"])
    assert _agreement(lit, tiny["float_out"]) >= 0.95
    assert _agreement(conv, tiny["float_out"]) >= 0.95


def test_range_methods_differ_as_described(tiny):
    f32, calib = tiny["f32"], tiny["calib"]
    mm = tq.activation_ranges(f32, tq.Recipe(ranges="minmax"), calib)
    ema = tq.activation_ranges(f32, tq.Recipe(ranges="ema"), calib)
    pct = tq.activation_ranges(f32, tq.Recipe(ranges="percentile", percentile=99.0), calib)
    assert mm.keys() == ema.keys() == pct.keys()
    for name in mm:  # the true min/max contains the moving average and the percentile
        assert np.all(mm[name]["max"] >= ema[name]["max"] - 1e-6)
        assert np.all(mm[name]["max"] >= pct[name]["max"] - 1e-6)
    assert any(np.any(mm[n]["max"] > ema[n]["max"] + 1e-6) for n in mm)
    assert any(np.any(mm[n]["max"] > pct[n]["max"] + 1e-6) for n in mm)


def test_litert_selective_keeps_named_ops_in_float(tiny):
    q = tq.quantize(tiny["f32"], tq.Recipe(), tiny["calib"])
    ranking = tq.tensor_errors(tiny["f32"], q, tiny["calib"][:8])
    assert ranking and ranking == sorted(ranking, key=lambda r: -r["rmse_per_scale"])
    worst = ranking[0]
    sel = tq.quantize(tiny["f32"], tq.Recipe(float_ops=(worst["tensor_name"],)), tiny["calib"])
    m = edgelib.Model(sel)
    ops = _ops(sel)
    assert [dt for op, dt in ops if op in COMPUTE].count(np.float32) == 1  # one float island ...
    assert [dt for op, dt in ops if op in COMPUTE].count(np.int8) == 3
    assert ("QUANTIZE", np.int8) in ops  # ... back to int8 after it
    assert m.input["dtype"] == np.int8  # the rest stays int8, I/O included
    floats = {d["name"]: d["dtype"] for d in m.interpreter.get_tensor_details()}
    assert floats[worst["tensor_name"]] == np.float32
    assert _agreement(m.predict(tiny["x"]), tiny["float_out"]) >= 0.95


def test_per_tensor_and_dynamic_recipes(tiny):
    pc = tq.quantize(tiny["f32"], tq.Recipe(), tiny["calib"])
    pt = tq.quantize(tiny["f32"], tq.Recipe(per_channel=False), tiny["calib"])
    assert len(pt) < len(pc)  # one scale per tensor instead of one per output channel
    dyn = edgelib.Model(tq.quantize(tiny["f32"], tq.Recipe(precision="dynamic")))
    assert dyn.input["dtype"] == np.float32
    assert _agreement(dyn.predict(tiny["x"]), tiny["float_out"]) >= 0.95


def test_verification_refuses_a_broken_litert_model(tiny):
    """Activation ranges a thousand times too small saturate every layer: verification must say no."""
    from ai_edge_quantizer import quantizer

    from edgekit.errors import VerificationError
    from edgekit.pipeline.export import verify

    recipe = tq.Recipe()
    ranges = tq.activation_ranges(tiny["f32"], recipe, tiny["calib"])
    broken_ranges = {k: {**v, "min": v["min"] * 1e-3, "max": v["max"] * 1e-3} for k, v in ranges.items()}
    qt = quantizer.Quantizer(bytearray(tiny["f32"]), recipe.aeq_recipe())
    broken = bytes(qt.quantize(broken_ranges, enable_progress_report=False).quantized_model)
    batch = D.ImageBatch(tiny["x"], (), (), "digits")
    with pytest.raises(VerificationError, match="does not follow the float model"):
        verify(tiny["float_out"], broken, batch)
    good = tq.quantize(tiny["f32"], recipe, tiny["calib"])
    assert verify(tiny["float_out"], good, batch)["output_correlation"] > 0.9
