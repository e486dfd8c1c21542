"""Tiny `.tflite` classifiers written with the TFLite flatbuffer schema (no TensorFlow, milliseconds).

    image [1, S, S, 3] -> CONV_2D 1x1 -> [1, S, S, 4] -> MEAN over H, W -> FULLY_CONNECTED -> [1, classes]

int8 (the shape of a real quantized classifier: int8 I/O with scale and zero-point, int8 weights,
int32 bias) or float32; variants a hostile tester would hand edgekit: NaN weights, a second input, a
second output, no inputs or no outputs. `mutate_structure` edits a parsed model the way the fuzz test
and the H1 repro do (operator input indices, tensor shapes, buffer indices).
"""

from __future__ import annotations

import numpy as np


def _schema():
    import ai_edge_litert.schema_py_generated as s  # the schema LiteRT ships

    return s


def pack(model) -> bytes:
    """A ModelT back to flatbuffer bytes (file identifier TFL3)."""
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def parse(data: bytes):
    return _schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def classifier(
    *,
    size: int = 16,
    classes: int = 3,
    dtype: str = "int8",
    nan: bool = False,
    inputs: int = 1,
    outputs: int = 1,
    seed: int = 0,
) -> bytes:
    """The bytes of a tiny image classifier (see the module docstring)."""
    s = _schema()
    rng = np.random.default_rng(seed)
    q = dtype in ("int8", "uint8")
    tt = {"int8": s.TensorType.INT8, "uint8": s.TensorType.UINT8}.get(dtype, s.TensorType.FLOAT32)
    np_q, off = (np.uint8, 128) if dtype == "uint8" else (np.int8, 0)  # uint8: zero-points move by 128
    buffers = [s.BufferT()]  # buffer 0: the empty sentinel

    def buf(arr: np.ndarray | None) -> int:
        b = s.BufferT()
        if arr is not None:
            b.data = np.frombuffer(arr.tobytes(), np.uint8).tolist()
        buffers.append(b)
        return len(buffers) - 1

    tensors = []

    def tensor(name, shape, ttype, data=None, scale=None, zp=0) -> int:
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shape), ttype, buf(data)
        if scale is not None:
            qp = s.QuantizationParametersT()
            qp.scale, qp.zeroPoint = [float(scale)], [int(zp)]
            t.quantization = qp
        tensors.append(t)
        return len(tensors) - 1

    k = rng.uniform(-1, 1, size=(4, 1, 1, 3))
    w = rng.uniform(-1, 1, size=(classes, 4))
    if q:
        x = tensor("image", [1, size, size, 3], tt, scale=1.0, zp=off - 128)  # raw pixels as q
        kq = (np.round(k * 127) + off).astype(np_q)
        kt = tensor("conv/kernel", [4, 1, 1, 3], tt, kq, scale=1 / 127, zp=off)
        kb = tensor("conv/bias", [4], s.TensorType.INT32, np.zeros(4, np.int32), scale=1 / 127)
        c = tensor("conv", [1, size, size, 4], tt, scale=2.0, zp=off)
        axes = tensor("axes", [2], s.TensorType.INT32, np.asarray([1, 2], np.int32))
        m = tensor("mean", [1, 1, 1, 4], tt, scale=2.0, zp=off)
        r = tensor("flat", [1, 4], tt, scale=2.0, zp=off)
        wq = (np.round(w * 127) + off).astype(np_q)
        wt = tensor("fc/weights", [classes, 4], tt, wq, scale=1 / 127, zp=off)
        bt = tensor("fc/bias", [classes], s.TensorType.INT32, np.zeros(classes, np.int32), scale=2 / 127)
        y = tensor("logits", [1, classes], tt, scale=2.0, zp=off)
    else:
        x = tensor("image", [1, size, size, 3], tt)
        kt = tensor("conv/kernel", [4, 1, 1, 3], tt, k.astype(np.float32))
        kb = tensor("conv/bias", [4], tt, np.zeros(4, np.float32))
        c = tensor("conv", [1, size, size, 4], tt)
        axes = tensor("axes", [2], s.TensorType.INT32, np.asarray([1, 2], np.int32))
        m = tensor("mean", [1, 1, 1, 4], tt)
        r = tensor("flat", [1, 4], tt)
        wf = w.astype(np.float32)
        if nan:
            wf[:] = np.nan
        wt = tensor("fc/weights", [classes, 4], tt, wf)
        bt = tensor("fc/bias", [classes], tt, np.zeros(classes, np.float32))
        y = tensor("logits", [1, classes], tt)

    codes = []
    for code in (
        s.BuiltinOperator.CONV_2D,
        s.BuiltinOperator.MEAN,
        s.BuiltinOperator.FULLY_CONNECTED,
        s.BuiltinOperator.ADD,
        s.BuiltinOperator.RESHAPE,
    ):
        oc = s.OperatorCodeT()
        oc.builtinCode = oc.deprecatedBuiltinCode = code
        codes.append(oc)

    def op(index, ins, outs, opt_type, opt):
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = index, list(ins), list(outs)
        o.builtinOptionsType, o.builtinOptions = opt_type, opt
        return o

    shape = tensor("flat/shape", [2], s.TensorType.INT32, np.asarray([1, 4], np.int32))
    keep = s.ReducerOptionsT()
    keep.keepDims = True
    reshape = s.ReshapeOptionsT()
    reshape.newShape = [1, 4]
    conv = s.Conv2DOptionsT()
    conv.strideH = conv.strideW = 1
    ops = [
        op(0, [x, kt, kb], [c], s.BuiltinOptions.Conv2DOptions, conv),
        op(1, [c, axes], [m], s.BuiltinOptions.ReducerOptions, keep),
        op(4, [m, shape], [r], s.BuiltinOptions.ReshapeOptions, reshape),
        op(2, [r, wt, bt], [y], s.BuiltinOptions.FullyConnectedOptions, s.FullyConnectedOptionsT()),
    ]
    graph_in, graph_out = [x], [y]
    if inputs == 2:  # a second input added to the logits: a model edgekit would feed only half of
        extra = tensor("extra", [1, classes], tt, **({"scale": 4.0} if q else {}))
        total = tensor("total", [1, classes], tt, **({"scale": 8.0} if q else {}))
        ops.append(op(3, [y, extra], [total], s.BuiltinOptions.AddOptions, s.AddOptionsT()))
        graph_in, graph_out = [x, extra], [total]
    if outputs == 2:
        graph_out = [*graph_out, r]
    if inputs == 0:
        graph_in = []
    if outputs == 0:
        graph_out = []

    g = s.SubGraphT()
    g.tensors, g.inputs, g.outputs, g.operators, g.name = tensors, graph_in, graph_out, ops, "main"
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, codes, [g], buffers
    model.description = "edgekit test classifier"
    return pack(model)
