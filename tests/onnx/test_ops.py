"""Op by op: each operator the importer handles, as a tiny ONNX graph, against ONNX Runtime.

The Keras model built from the graph must compute what ONNX Runtime computes on the same (NCHW vs
NHWC) inputs, to float rounding. Attribute variants that change the layout maths (padding that TF's
SAME cannot express, depth multipliers, groups, constants broadcast over channels) are separate cases.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.converters import onnx_check, onnx_keras

try:
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # the onnx marker skips every test here, with the reason
    TensorProto = helper = numpy_helper = None

pytestmark = [pytest.mark.tf, pytest.mark.onnx]
ATOL = 1e-5  # float32 arithmetic in a different order: a few ulps of values of order 1
RNG = np.random.default_rng(0)


def _model(nodes, in_shape, out_name="y", inits=(), opset=17):
    """A checked one-input ModelProto; the output's rank comes from a first ONNX Runtime run."""

    def build(out_info):
        graph = helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape[1:]])],
            [out_info],
            initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits],
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m

    probe = build(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None))
    x = np.zeros([2, *in_shape[1:]], np.float32)
    rank = onnx_check.session(probe.SerializeToString()).run(None, {"x": x})[0].ndim
    dims = [f"d{i}" for i in range(rank)]
    m = build(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, dims))
    return onnx_check.load_bytes(m.SerializeToString())


def _w(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _check(model, in_shape, nhwc_input: bool = False, positive: bool = False):
    """Run ONNX Runtime and the converted Keras model on the same values; return the report."""
    x = RNG.standard_normal((2, *in_shape[1:])).astype(np.float32)
    if positive:
        x = np.abs(x)
    ref = onnx_check.run(onnx_check.session(model), x, batch=2)[0]
    km, report = onnx_keras.convert(model)
    kx = x if nhwc_input or len(in_shape) != 4 else x.transpose(0, 2, 3, 1)
    out = np.asarray(km(kx))
    assert out.shape == ref.shape, (out.shape, ref.shape)
    np.testing.assert_allclose(out, ref, atol=ATOL, rtol=1e-5)
    return report


def _conv(name="c", pads=(1, 1, 1, 1), strides=(1, 1), group=1, cin=4, cout=6, k=3, bias=True, dil=(1, 1)):
    w = _w(cout, cin // group, k, k)
    inits = [("w", w)] + ([("b", _w(cout))] if bias else [])
    node = helper.make_node(
        "Conv",
        ["x", "w", *(["b"] if bias else [])],
        ["y"],
        name=name,
        pads=list(pads),
        strides=list(strides),
        group=group,
        kernel_shape=[k, k],
        dilations=list(dil),
    )
    return node, inits


@pytest.mark.parametrize(
    "case",
    [
        {"pads": (1, 1, 1, 1)},  # SAME at stride 1
        {"pads": (0, 0, 0, 0), "bias": False},  # VALID
        {"pads": (1, 1, 1, 1), "strides": (2, 2)},  # PyTorch's stride-2 pad 1: TF SAME pads (0, 1)
        {"pads": (0, 0, 1, 1), "strides": (2, 2)},  # equals TF SAME on an even input
        {"pads": (2, 1, 0, 1)},  # asymmetric
        {"pads": (2, 2, 2, 2), "dil": (2, 2)},  # dilated
        {"group": 4, "cout": 4},  # depthwise
        {"group": 4, "cout": 8, "strides": (2, 2)},  # depthwise, depth multiplier 2
        {"group": 2, "cout": 6},  # grouped
    ],
)
def test_conv(case):
    node, inits = _conv(**case)
    report = _check(_model([node], [1, 4, 8, 8], inits=inits), [1, 4, 8, 8])
    assert report.transposes_emitted == 1  # only the NCHW graph output: none around the convolution


def test_conv_even_input_stride2():
    node, inits = _conv(pads=(0, 0, 1, 1), strides=(2, 2))
    _check(_model([node], [1, 4, 8, 8], inits=inits), [1, 4, 8, 8])


def _unary(op, **attrs):
    return _model([helper.make_node(op, ["x"], ["y"], **attrs)], [1, 3, 5, 5])


@pytest.mark.parametrize(
    "op,attrs",
    [
        ("Relu", {}),
        ("LeakyRelu", {"alpha": 0.1}),
        ("Sigmoid", {}),
        ("Tanh", {}),
        ("HardSwish", {}),
        ("HardSigmoid", {"alpha": 0.2, "beta": 0.5}),
        ("Identity", {}),
        ("Softmax", {"axis": 1}),  # over channels: the NHWC axis is -1
        ("GlobalAveragePool", {}),
        ("GlobalMaxPool", {}),
    ],
)
def test_unary(op, attrs):
    _check(_unary(op, **attrs), [1, 3, 5, 5])


@pytest.mark.parametrize("lo,hi", [(0.0, 6.0), (0.0, None), (-1.0, 1.0)])
def test_clip(lo, hi):
    inits = [("lo", np.array(lo, np.float32))] + (
        [("hi", np.array(hi, np.float32))] if hi is not None else []
    )
    node = helper.make_node("Clip", ["x", "lo", *(["hi"] if hi is not None else [])], ["y"])
    _check(_model([node], [1, 3, 5, 5], inits=inits), [1, 3, 5, 5])


def test_batchnorm_standalone():
    c = 3
    inits = [("s", _w(c) + 1), ("b", _w(c)), ("m", _w(c)), ("v", np.abs(_w(c)) + 0.5)]
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)
    _check(_model([node], [1, c, 4, 4], inits=inits), [1, c, 4, 4])


def test_conv_batchnorm_is_folded():
    node, inits = _conv(cout=6)
    bn = helper.make_node("BatchNormalization", ["y0", "s", "b2", "m", "v"], ["y"])
    node.output[0] = "y0"
    inits += [("s", _w(6) + 1), ("b2", _w(6)), ("m", _w(6)), ("v", np.abs(_w(6)) + 0.5)]
    report = _check(_model([node, bn], [1, 4, 8, 8], inits=inits), [1, 4, 8, 8])
    assert report.folded["batchnorm"] == 1
    assert "BatchNormalization" not in report.ops


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min"])
@pytest.mark.parametrize("const_shape", [None, (1, 3, 1, 1), (3, 1, 1), (1,), ()])
def test_binary(op, const_shape):
    if const_shape is None:  # tensor (op) tensor: a residual-style join of two branches
        nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node(op, ["x", "r"], ["y"])]
        inits = []
    else:
        c = _w(*const_shape) if const_shape else np.array(0.7, np.float32)
        if op == "Div":
            c = np.abs(c) + 0.5
        nodes = [helper.make_node(op, ["x", "c"], ["y"])]
        inits = [("c", c)]
    _check(_model(nodes, [1, 3, 4, 4], inits=inits), [1, 3, 4, 4])


@pytest.mark.parametrize(
    "kind,attrs,positive",
    [
        ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, False),
        ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, False),  # mirrored
        ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, True),  # zero pad
        ("MaxPool", {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}, False),  # SAME
        ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}, False),
        ("AveragePool", {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}, False),
        (
            "AveragePool",
            {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
            False,
        ),
    ],
)
def test_pool(kind, attrs, positive):
    _check(
        _model([helper.make_node(kind, ["x"], ["y"], **attrs)], [1, 3, 8, 8]), [1, 3, 8, 8], positive=positive
    )


def test_pool_unreproducible_padding_is_refused():
    node = helper.make_node(
        "AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
    )
    with pytest.raises(onnx_keras.UnsupportedOnnxError, match="pads"):
        onnx_keras.convert(_model([node], [1, 3, 8, 8]))


def test_pad_then_conv():
    node, inits = _conv(pads=(0, 0, 0, 0))
    node.input[0] = "p"
    pad = helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant")
    inits.append(("pads", np.array([0, 0, 1, 2, 0, 0, 1, 0], np.int64)))
    _check(_model([pad, node], [1, 4, 8, 8], inits=inits), [1, 4, 8, 8])


def test_pad_reflect():
    pad = helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")
    _check(
        _model([pad], [1, 3, 6, 6], inits=[("pads", np.array([0, 0, 1, 1, 0, 0, 2, 2], np.int64))]),
        [1, 3, 6, 6],
    )


def test_concat_channels():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Concat", ["x", "r"], ["y"], axis=1)]
    _check(_model(nodes, [1, 3, 4, 4]), [1, 3, 4, 4])


def test_flatten_of_a_map_keeps_nchw_order():
    """Flatten of a 2x2 map must follow NCHW memory order: the one place a transpose is needed."""
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1),
    ]
    report = _check(_model(nodes, [1, 3, 2, 2], inits=[("w", _w(5, 12)), ("b", _w(5))]), [1, 3, 2, 2])
    assert report.transposes_emitted == 1


def test_reshape_after_global_pool_is_free():
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"]),
        helper.make_node("Reshape", ["g", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["y"]),
    ]
    inits = [("shape", np.array([-1, 3], np.int64)), ("w", _w(3, 4)), ("b", _w(4))]
    report = _check(_model(nodes, [1, 3, 4, 4], inits=inits), [1, 3, 4, 4])
    assert report.transposes_emitted == 0
    assert report.folded["gemm"] == 1  # MatMul + Add became one fully-connected layer


def test_shape_gather_reshape_chain():
    """x.view(x.size(0), -1) as older exporters write it: Shape -> Gather -> Unsqueeze -> Concat."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"]),
        helper.make_node("Shape", ["g"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["g", "shape"], ["f"]),
        helper.make_node("Softmax", ["f"], ["y"], axis=-1),
    ]
    inits = [
        ("zero", np.array(0, np.int64)),
        ("ax", np.array([0], np.int64)),
        ("minus1", np.array([-1], np.int64)),
    ]
    _check(_model(nodes, [1, 3, 4, 4], inits=inits), [1, 3, 4, 4])


def test_reduce_mean_spatial_and_squeeze():
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=1),
        helper.make_node("Squeeze", ["m", "axes"], ["y"]),
    ]
    _check(_model(nodes, [1, 3, 4, 4], inits=[("axes", np.array([2, 3], np.int64))]), [1, 3, 4, 4])


def test_nhwc_input_with_transpose_costs_nothing():
    """tf2onnx-style graphs take NHWC and transpose to NCHW: the importer absorbs the transpose."""
    node, inits = _conv()
    node.input[0] = "t"
    node.output[0] = "c"
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        node,
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Flatten", ["g"], ["y"]),
    ]
    report = _check(_model(nodes, [1, 8, 8, 4], inits=inits), [1, 8, 8, 4], nhwc_input=True)
    assert report.input_layout == "NHWC"
    assert report.transposes_emitted == 0


def test_opset_11_clip_and_softmax():
    nodes = [
        helper.make_node("Clip", ["x"], ["c"], min=0.0, max=6.0),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("Softmax", ["f"], ["y"]),
    ]
    _check(_model(nodes, [1, 3, 1, 1], opset=10), [1, 3, 1, 1])


def test_unsupported_operator_is_named():
    m = _model(
        [helper.make_node("Resize", ["x", "", "scales"], ["y"])],
        [1, 3, 4, 4],
        inits=[("scales", np.ones(4, np.float32))],
    )
    with pytest.raises(onnx_keras.UnsupportedOnnxError, match="Resize") as exc:
        onnx_keras.convert(m)
    assert exc.value.ops == ("Resize",)
