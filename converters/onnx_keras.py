"""ONNX -> Keras (NHWC), operator by operator, for the operators image classifiers use.

edgekit's own ONNX importer: it needs nothing beyond onnx + the TensorFlow/Keras already installed, so
the main environment stays consistent (see README "ONNX in and out" for why not onnx-tf/onnx2tf).

Layout: ONNX tensors are NCHW; the Keras model is NHWC. Rather than wrapping each convolution in a
pair of transposes, every value carries a permutation `perm` with physical = logical.transpose(perm)
(NHWC activations have perm (0, 2, 3, 1)). Layout-agnostic ops keep the perm, channel-axis ops map
their axis through it, an ONNX Transpose only changes the perm, and a real transpose is emitted only
where memory order truly matters (a Flatten/Reshape of a map larger than 1x1, or a graph output).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgekit.converters.onnx_check import OnnxModelError, graph_inputs, opset, static_shape
from edgekit.converters.onnx_fold import FoldReport, fold

NHWC = (0, 2, 3, 1)

SUPPORTED_OPS = (
    "Add AveragePool BatchNormalization Cast Clip Concat Constant Conv Div Dropout Flatten Gather Gemm "
    "GlobalAveragePool GlobalMaxPool HardSigmoid HardSwish Identity LeakyRelu MatMul Max MaxPool Min "
    "Mul Pad ReduceMean Relu Reshape Shape Sigmoid Softmax Squeeze Sub Tanh Transpose Unsqueeze"
).split()


class UnsupportedOnnxError(OnnxModelError):
    """The graph uses an operator (or an attribute value) this converter does not handle."""

    def __init__(self, message: str, ops: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.ops = ops


@dataclass
class Value:
    """A tensor during conversion: a Keras tensor (physical layout) or a numpy constant (logical)."""

    tensor: object = None
    const: np.ndarray | None = None
    perm: tuple[int, ...] = ()
    nonneg: bool = False  # known >= 0 (after Relu etc.): zero padding is then exact for MaxPool

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def shape(self) -> tuple:
        """Logical (ONNX) shape; the batch dimension is None for tensors."""
        if self.is_const:
            return tuple(self.const.shape)
        phys = tuple(self.tensor.shape)
        out = [None] * len(phys)
        for i, p in enumerate(self.perm):
            out[p] = phys[i]
        return tuple(out)


@dataclass
class ConversionReport:
    folded: dict = field(default_factory=dict)
    ops: dict = field(default_factory=dict)  # ONNX op type -> count
    transposes_emitted: int = 0
    input_layout: str = "NCHW"
    input_name: str = ""
    output_names: list = field(default_factory=list)


def unsupported_ops(model) -> list[str]:
    return sorted({n.op_type for n in model.graph.node if n.op_type not in SUPPORTED_OPS or n.domain})


def convert(model, name: str = "onnx_model", *, fold_batchnorm: bool = True):
    """Build a Keras model computing the same function as the ONNX `model` (ModelProto).

    Returns (keras.Model with NHWC image input, ConversionReport). fold_batchnorm=False keeps
    BatchNormalization as Keras layers (for comparisons; folded is what int8 wants).
    """
    bad = unsupported_ops(model)
    if bad:
        raise UnsupportedOnnxError(
            f"operators not supported by edgekit's ONNX importer: {', '.join(bad)}", tuple(bad)
        )
    if fold_batchnorm:
        model, folded = fold(model)
    else:
        folded = FoldReport()
    return _Converter(model, name, folded).run()


class _Converter:
    def __init__(self, model, name: str, folded) -> None:
        from onnx import numpy_helper

        self.model = model
        self.name = name
        self.opset = opset(model)
        self.nh = numpy_helper
        self.values: dict[str, Value] = {}
        self.report = ConversionReport(
            folded={k: getattr(folded, k) for k in ("batchnorm", "mul", "add", "gemm")}
        )
        self._names: set[str] = set()

    # ----------------------------------------------------------------- driver

    def run(self):
        import keras

        g = self.model.graph
        for init in g.initializer:
            self.values[init.name] = Value(const=self.nh.to_array(init))
        inputs = graph_inputs(self.model)
        if len(inputs) != 1:
            raise UnsupportedOnnxError(f"the model has {len(inputs)} inputs; an image classifier has one")
        kin = self._input(inputs[0])
        for node in g.node:
            try:
                self._node(node)
            except UnsupportedOnnxError:
                raise
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise UnsupportedOnnxError(
                    f"cannot convert {node.op_type} node {node.name or node.output[0]!r}: {exc}"
                ) from exc
            self.report.ops[node.op_type] = self.report.ops.get(node.op_type, 0) + 1
        outs = []
        for o in g.output:
            v = self.values[o.name]
            if v.is_const:
                raise UnsupportedOnnxError(f"output {o.name!r} is a constant; nothing to convert")
            outs.append(self._to_perm(v, tuple(range(len(v.perm)))).tensor)
            self.report.output_names.append(o.name)
        km = keras.Model(kin, outs[0] if len(outs) == 1 else outs, name=_safe(self.name))
        return km, self.report

    def _input(self, vi):
        import keras

        shape = static_shape(vi)
        if len(shape) == 4:
            if any(d is None for d in shape[1:]):
                raise UnsupportedOnnxError(
                    f"input {vi.name!r} has dynamic dims {shape}; export the ONNX with a fixed image size"
                )
            self.report.input_layout = input_layout(self.model)
            perm = NHWC if self.report.input_layout == "NCHW" else (0, 1, 2, 3)
            phys = [shape[p] for p in perm]
        elif len(shape) in (2, 3):
            perm, phys = tuple(range(len(shape))), shape
            self.report.input_layout = "plain"
        else:
            raise UnsupportedOnnxError(f"input {vi.name!r} has shape {shape}; expected an image batch")
        kin = keras.Input(tuple(phys[1:]), name=_safe(vi.name))
        self.values[vi.name] = Value(tensor=kin, perm=tuple(perm))
        self.report.input_name = vi.name
        return kin

    def _node(self, node) -> None:
        fn = getattr(self, f"_op_{node.op_type}")
        ins = [self.values[n] if n else None for n in node.input]
        out = fn(node, ins)
        if isinstance(out, Value):
            out = [out]
        for name, v in zip(node.output, out, strict=False):
            if name:
                self.values[name] = v

    def lname(self, node, suffix: str = "") -> str:
        base = _safe(f"{node.op_type}_{node.name or node.output[0]}{suffix}")[:60]
        n, i = base, 1
        while n in self._names:
            i += 1
            n = f"{base}_{i}"
        self._names.add(n)
        return n

    # ----------------------------------------------------------------- layout helpers

    def _to_perm(self, v: Value, perm: tuple[int, ...]) -> Value:
        """The same logical tensor in physical layout `perm` (a reshape when memory order allows)."""
        from keras import ops

        if v.is_const or v.perm == perm:
            return v
        logical = v.shape
        target_phys = [logical[p] for p in perm]
        if _same_memory_order(v.perm, perm, logical):
            t = ops.reshape(v.tensor, (-1, *target_phys[1:]))
        else:
            # physical_new = physical_old.transpose(k) where perm[i] = v.perm[k[i]]
            k = tuple(v.perm.index(p) for p in perm)
            t = ops.transpose(v.tensor, k)
            self.report.transposes_emitted += 1
        return Value(tensor=t, perm=perm, nonneg=v.nonneg)

    def _nhwc(self, v: Value, op: str) -> Value:
        if v.is_const or len(v.perm) != 4:
            raise ValueError(f"{op} expects a 4-D image tensor; received shape {v.shape}")
        return self._to_perm(v, NHWC)

    def _const_phys(self, c: np.ndarray, v: Value) -> np.ndarray:
        """A constant broadcast against tensor `v`, laid out like `v` physically."""
        c = np.asarray(c, dtype=np.float32)
        r = len(v.perm)
        if c.ndim > r:
            raise ValueError(f"constant of shape {c.shape} broadcasts beyond rank {r}")
        c = c.reshape((1,) * (r - c.ndim) + c.shape)
        return np.ascontiguousarray(c.transpose(v.perm))

    # ----------------------------------------------------------------- constants / shape ops

    def _op_Constant(self, node, ins):
        for a in node.attribute:
            if a.name == "value":
                return Value(const=self.nh.to_array(a.t))
            if a.name == "value_float":
                return Value(const=np.array(a.f, np.float32))
            if a.name == "value_floats":
                return Value(const=np.array(a.floats, np.float32))
            if a.name == "value_int":
                return Value(const=np.array(a.i, np.int64))
            if a.name == "value_ints":
                return Value(const=np.array(a.ints, np.int64))
        raise ValueError("Constant without a supported value attribute")

    def _op_Identity(self, node, ins):
        return ins[0]

    def _op_Dropout(self, node, ins):
        return [ins[0], None]

    def _op_Shape(self, node, ins):
        shape = [(-1 if d is None else d) for d in ins[0].shape]  # -1: the batch, resolved by Reshape
        return Value(const=np.array(shape, np.int64))

    def _op_Cast(self, node, ins):
        if not ins[0].is_const:
            return ins[0]  # float models: casts between float types are no-ops for conversion
        from onnx import helper

        to = helper.tensor_dtype_to_np_dtype(_attr(node, "to", 1))
        return Value(const=ins[0].const.astype(to))

    def _op_Gather(self, node, ins):
        data, idx = ins
        if not (data.is_const and idx.is_const):
            raise ValueError("Gather on a non-constant tensor (embedding lookups are not image ops)")
        return Value(const=np.take(data.const, idx.const, axis=_attr(node, "axis", 0)))

    def _axes(self, node, ins, pos: int = 1):
        if len(ins) > pos and ins[pos] is not None:
            return [int(a) for a in ins[pos].const.ravel()]
        return _attr(node, "axes", None)

    def _op_Unsqueeze(self, node, ins):
        axes = self._axes(node, ins)
        x = ins[0]
        if x.is_const:
            out = x.const
            for a in sorted(a % (out.ndim + len(axes)) for a in axes):
                out = np.expand_dims(out, a)
            return Value(const=out)
        shape = list(x.shape)
        r = len(shape) + len(axes)
        for a in sorted(a % r for a in axes):
            shape.insert(a, 1)
        return self._reshape(node, x, shape)

    def _op_Squeeze(self, node, ins):
        axes = self._axes(node, ins)
        x = ins[0]
        if x.is_const:
            return Value(const=np.squeeze(x.const, axis=tuple(axes) if axes else None))
        shape = list(x.shape)
        axes = [a % len(shape) for a in axes] if axes else [i for i, d in enumerate(shape) if d == 1]
        return self._reshape(node, x, [d for i, d in enumerate(shape) if i not in axes])

    def _op_Flatten(self, node, ins):
        x = ins[0]
        axis = _attr(node, "axis", 1)
        if x.is_const:
            s = x.const.shape
            return Value(const=x.const.reshape(int(np.prod(s[:axis])), -1))
        if axis != 1:
            raise ValueError(f"Flatten axis {axis}: only axis 1 (keep the batch) is supported")
        return self._reshape(node, x, [None, int(np.prod(x.shape[1:]))])

    def _op_Reshape(self, node, ins):
        x, shape = ins
        if not shape.is_const:
            raise ValueError("Reshape with a computed (non-constant) shape")
        target = [int(d) for d in shape.const.ravel()]
        if x.is_const:
            return Value(const=x.const.reshape(target))
        logical = x.shape
        if not _attr(node, "allowzero", 0):
            target = [logical[i] if d == 0 else d for i, d in enumerate(target)]
        rest = target[1:]
        item = int(np.prod(logical[1:]))
        if target[0] not in (-1, 1, None):
            raise ValueError(f"Reshape to {target} changes the batch dimension")
        if -1 in rest:
            known = int(np.prod([d for d in rest if d != -1]))
            rest[rest.index(-1)] = item // known
        if int(np.prod(rest)) != item:
            raise ValueError(f"Reshape of {logical} to {target} changes the batch dimension")
        return self._reshape(node, x, [None, *rest])

    def _reshape(self, node, x: Value, logical_out: list) -> Value:
        """Reshape in logical (ONNX) order; 4-D results go back to NHWC when that is free."""
        from keras import ops

        ident = tuple(range(len(x.perm)))
        x = self._to_perm(x, ident)
        out_ident = tuple(range(len(logical_out)))
        perm = out_ident
        if len(logical_out) == 4 and _same_memory_order(out_ident, NHWC, logical_out):
            perm = NHWC
        phys = [logical_out[p] for p in perm]
        t = ops.reshape(x.tensor, (-1, *phys[1:]))
        return Value(tensor=t, perm=perm, nonneg=x.nonneg)

    def _op_Transpose(self, node, ins):
        x = ins[0]
        p = _attr(node, "perm", None) or list(reversed(range(len(x.shape))))
        if x.is_const:
            return Value(const=np.transpose(x.const, p))
        if p[0] != 0:
            raise ValueError(f"Transpose {p} moves the batch dimension")
        # logical_out = logical_in.transpose(p); keep the physical tensor and re-label it.
        new_perm = tuple(p.index(q) for q in x.perm)
        return Value(tensor=x.tensor, perm=new_perm, nonneg=x.nonneg)

    def _op_Concat(self, node, ins):
        from keras import layers

        axis = _attr(node, "axis", 0)
        if all(v.is_const for v in ins):
            return Value(const=np.concatenate([v.const for v in ins], axis=axis))
        if any(v.is_const for v in ins):
            raise ValueError("Concat of a tensor with a constant")
        first = ins[0]
        vs = [self._to_perm(v, first.perm) for v in ins]
        phys_axis = first.perm.index(axis % len(first.perm))
        t = layers.Concatenate(axis=phys_axis, name=self.lname(node))([v.tensor for v in vs])
        return Value(tensor=t, perm=first.perm, nonneg=all(v.nonneg for v in vs))

    # ----------------------------------------------------------------- convolution and pooling

    def _op_Conv(self, node, ins):
        from keras import layers

        x = self._nhwc(ins[0], "Conv")
        w = ins[1].const
        if w is None or w.ndim != 4:
            raise ValueError("Conv needs constant 2-D convolution weights (O, I/groups, kH, kW)")
        b = ins[2].const if len(ins) > 2 and ins[2] is not None else None
        o, i_g, kh, kw = w.shape
        group = _attr(node, "group", 1)
        strides = tuple(_attr(node, "strides", [1, 1]))
        dil = tuple(_attr(node, "dilations", [1, 1]))
        cin = x.shape[1]
        if max(strides) > 1 and max(dil) > 1:
            raise ValueError("Conv with both stride and dilation > 1")
        x, padding = self._padding(node, x, (kh, kw), strides, dil, "conv")
        common = {"strides": strides, "dilation_rate": dil, "padding": padding, "use_bias": b is not None}
        if group == 1:
            layer = layers.Conv2D(o, (kh, kw), name=self.lname(node), **common)
            weights = [w.transpose(2, 3, 1, 0)]
        elif group == cin and i_g == 1:
            mult = o // cin
            layer = layers.DepthwiseConv2D((kh, kw), depth_multiplier=mult, name=self.lname(node), **common)
            weights = [w.reshape(cin, mult, kh, kw).transpose(2, 3, 0, 1)]
        else:
            layer = layers.Conv2D(o, (kh, kw), groups=group, name=self.lname(node), **common)
            weights = [w.transpose(2, 3, 1, 0)]
        t = layer(x.tensor)
        layer.set_weights([*weights, *([b] if b is not None else [])])
        return Value(tensor=t, perm=NHWC)

    def _padding(self, node, x: Value, kernel, strides, dil, kind: str, count_include_pad: int = 0):
        """(input, keras padding): 'valid', 'same' when TF's SAME equals the ONNX pads, else explicit."""
        from keras import ops

        hw = x.shape[2:]
        auto = _attr(node, "auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        eff = [d * (k - 1) + 1 for k, d in zip(kernel, dil, strict=True)]
        tf_same = []
        for n, s, e in zip(hw, strides, eff, strict=True):
            total = max((math.ceil(n / s) - 1) * s + e - n, 0)
            tf_same.append((total // 2, total - total // 2))
        if auto == "VALID":
            return x, "valid"
        if auto == "SAME_UPPER":
            if kind == "avg" and count_include_pad:
                return self._explicit(x, tf_same), "valid"
            return x, "same"
        if auto == "SAME_LOWER":
            pads = [(b, a) for a, b in tf_same]
        else:
            p = _attr(node, "pads", [0, 0, 0, 0])
            pads = [(p[0], p[2]), (p[1], p[3])]
        if all(a == 0 and b == 0 for a, b in pads):
            return x, "valid"
        if pads == tf_same and not (kind == "avg" and count_include_pad):
            return x, "same"
        if kind == "conv" or (kind == "avg" and count_include_pad) or (kind == "max" and x.nonneg):
            return self._explicit(x, pads), "valid"
        if kind == "max" and all(max(a, b) <= k // 2 for (a, b), k in zip(pads, kernel, strict=True)):
            # Mirrored border values already lie inside every window they enter, so a maximum over
            # them equals the maximum over the window without padding: exact, and int8-friendly
            # (padding with -inf is not).
            t = ops.pad(x.tensor, [[0, 0], list(pads[0]), list(pads[1]), [0, 0]], mode="symmetric")
            return Value(tensor=t, perm=NHWC, nonneg=x.nonneg), "valid"
        raise ValueError(f"{kind} pooling pads {pads} that neither TF SAME nor zero padding reproduce")

    def _explicit(self, x: Value, pads) -> Value:
        from keras import layers

        t = layers.ZeroPadding2D((tuple(pads[0]), tuple(pads[1])))(x.tensor)
        return Value(tensor=t, perm=NHWC, nonneg=x.nonneg)

    def _pool(self, node, ins, kind: str):
        from keras import layers

        x = self._nhwc(ins[0], node.op_type)
        kernel = tuple(_attr(node, "kernel_shape", None))
        strides = tuple(_attr(node, "strides", [1, 1]))
        if any(d != 1 for d in _attr(node, "dilations", [1, 1])):
            raise ValueError("dilated pooling")
        cip = _attr(node, "count_include_pad", 0)
        xin, padding = self._padding(node, x, kernel, strides, (1, 1), kind, cip)
        if _attr(node, "ceil_mode", 0):
            # ceil_mode only matters when it adds an output row/column; refuse that case.
            pads = _attr(node, "pads", [0, 0, 0, 0])
            for n, k, s, a, b in zip(x.shape[2:], kernel, strides, pads[:2], pads[2:], strict=True):
                if (n + a + b - k) % s:
                    raise ValueError("ceil_mode=1 pooling that adds an output row/column")
        cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
        t = cls(kernel, strides=strides, padding=padding, name=self.lname(node))(xin.tensor)
        return Value(tensor=t, perm=NHWC, nonneg=x.nonneg)

    def _op_MaxPool(self, node, ins):
        if len(node.output) > 1 and node.output[1]:
            raise ValueError("MaxPool with an Indices output")
        return self._pool(node, ins, "max")

    def _op_AveragePool(self, node, ins):
        return self._pool(node, ins, "avg")

    def _op_GlobalAveragePool(self, node, ins):
        from keras import layers

        x = self._nhwc(ins[0], node.op_type)
        t = layers.GlobalAveragePooling2D(keepdims=True, name=self.lname(node))(x.tensor)
        return Value(tensor=t, perm=NHWC, nonneg=x.nonneg)

    def _op_GlobalMaxPool(self, node, ins):
        from keras import layers

        x = self._nhwc(ins[0], node.op_type)
        t = layers.GlobalMaxPooling2D(keepdims=True, name=self.lname(node))(x.tensor)
        return Value(tensor=t, perm=NHWC, nonneg=x.nonneg)

    def _op_ReduceMean(self, node, ins):
        from keras import layers

        x = ins[0]
        axes = sorted(a % len(x.shape) for a in (self._axes(node, ins) or []))
        keep = _attr(node, "keepdims", 1)
        if len(x.shape) != 4 or axes != [2, 3]:
            raise ValueError(f"ReduceMean over axes {axes}: only the spatial mean (2, 3) is supported")
        x = self._nhwc(x, node.op_type)
        t = layers.GlobalAveragePooling2D(keepdims=bool(keep), name=self.lname(node))(x.tensor)
        return Value(tensor=t, perm=NHWC if keep else (0, 1), nonneg=x.nonneg)

    def _op_BatchNormalization(self, node, ins):
        from keras import layers

        x = ins[0]
        params = [v.const for v in ins[1:5]]
        if any(p is None for p in params):
            raise ValueError("BatchNormalization with non-constant parameters")
        axis = x.perm.index(1)
        layer = layers.BatchNormalization(
            axis=axis, epsilon=_attr(node, "epsilon", 1e-5), name=self.lname(node)
        )
        t = layer(x.tensor)
        layer.set_weights([p.astype(np.float32) for p in params])
        return [Value(tensor=t, perm=x.perm)]

    def _op_Pad(self, node, ins):
        from keras import ops

        x = ins[0]
        mode = _attr(node, "mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if len(ins) > 1 and ins[1] is not None:
            pads = [int(p) for p in ins[1].const.ravel()]
            value = float(ins[2].const.ravel()[0]) if len(ins) > 2 and ins[2] is not None else 0.0
        else:
            pads = _attr(node, "pads", None)
            value = _attr(node, "value", 0.0)
        if len(ins) > 3 and ins[3] is not None:
            raise ValueError("Pad with an axes input")
        r = len(x.shape)
        if any(p < 0 for p in pads):
            raise ValueError("negative pads (cropping)")
        logical = [(pads[i], pads[i + r]) for i in range(r)]
        phys = [list(logical[p]) for p in x.perm]
        if mode not in ("constant", "reflect"):
            raise ValueError(f"Pad mode {mode!r}: only constant and reflect are supported")
        kw = {"constant_values": value} if mode == "constant" else {}
        t = ops.pad(x.tensor, phys, mode=mode, **kw)
        return Value(tensor=t, perm=x.perm, nonneg=x.nonneg and (mode != "constant" or value >= 0))

    # ----------------------------------------------------------------- dense

    def _op_Gemm(self, node, ins):
        from keras import layers

        a, b = ins[0], ins[1]
        c = ins[2] if len(ins) > 2 else None
        if _attr(node, "transA", 0):
            raise ValueError("Gemm with transA=1")
        if b.const is None or (c is not None and c.const is None):
            raise ValueError("Gemm needs constant B and C (a fully-connected layer)")
        a = self._to_perm(a, (0, 1))
        w = b.const.T if _attr(node, "transB", 0) else b.const
        w = w * _attr(node, "alpha", 1.0)
        bias = None
        if c is not None:
            bias = np.broadcast_to(c.const.astype(np.float32) * _attr(node, "beta", 1.0), (w.shape[1],))
        layer = layers.Dense(w.shape[1], use_bias=bias is not None, name=self.lname(node))
        t = layer(a.tensor)
        layer.set_weights([w.astype(np.float32), *([bias] if bias is not None else [])])
        return Value(tensor=t, perm=(0, 1))

    def _op_MatMul(self, node, ins):
        from keras import layers

        a, b = ins
        if a.is_const and b.is_const:
            return Value(const=a.const @ b.const)
        if b.const is None or b.const.ndim != 2 or a.is_const:
            raise ValueError("MatMul needs a constant 2-D right-hand side (a fully-connected layer)")
        a = self._to_perm(a, tuple(range(len(a.perm))))
        layer = layers.Dense(b.const.shape[1], use_bias=False, name=self.lname(node))
        t = layer(a.tensor)
        layer.set_weights([b.const.astype(np.float32)])
        return Value(tensor=t, perm=a.perm)

    # ----------------------------------------------------------------- element-wise

    def _binary(self, node, ins, fn, layer_cls=None):
        a, b = ins
        if a.is_const and b.is_const:
            return Value(const=fn(np, a.const, b.const))
        from keras import ops

        if a.is_const or b.is_const:
            v, c = (b, a) if a.is_const else (a, b)
            cp = self._const_phys(c.const, v)
            t = fn(ops, cp, v.tensor) if a.is_const else fn(ops, v.tensor, cp)
            return Value(tensor=t, perm=v.perm)
        if len(a.perm) != len(b.perm):
            raise ValueError(f"broadcast between ranks {len(a.shape)} and {len(b.shape)}")
        b = self._to_perm(b, a.perm)
        if layer_cls is not None and tuple(a.tensor.shape) == tuple(b.tensor.shape):
            t = layer_cls(name=self.lname(node))([a.tensor, b.tensor])
        else:
            t = fn(ops, a.tensor, b.tensor)
        return Value(
            tensor=t, perm=a.perm, nonneg=a.nonneg and b.nonneg and node.op_type in ("Add", "Mul", "Max")
        )

    def _op_Add(self, node, ins):
        from keras import layers

        return self._binary(node, ins, lambda m, x, y: m.add(x, y), layers.Add)

    def _op_Sub(self, node, ins):
        from keras import layers

        return self._binary(node, ins, lambda m, x, y: m.subtract(x, y), layers.Subtract)

    def _op_Mul(self, node, ins):
        from keras import layers

        return self._binary(node, ins, lambda m, x, y: m.multiply(x, y), layers.Multiply)

    def _op_Div(self, node, ins):
        return self._binary(node, ins, lambda m, x, y: m.divide(x, y))

    def _op_Max(self, node, ins):
        if len(ins) != 2:
            raise ValueError("Max of more than two inputs")
        return self._binary(node, ins, lambda m, x, y: m.maximum(x, y))

    def _op_Min(self, node, ins):
        if len(ins) != 2:
            raise ValueError("Min of more than two inputs")
        return self._binary(node, ins, lambda m, x, y: m.minimum(x, y))

    def _unary(self, node, x: Value, layer, nonneg: bool = False) -> Value:
        if x.is_const:
            raise ValueError(f"{node.op_type} of a constant")
        return Value(tensor=layer(x.tensor), perm=x.perm, nonneg=nonneg)

    def _op_Relu(self, node, ins):
        from keras import layers

        return self._unary(node, ins[0], layers.ReLU(name=self.lname(node)), nonneg=True)

    def _op_Clip(self, node, ins):
        from keras import layers, ops

        if self.opset < 11:
            lo, hi = _attr(node, "min", -np.inf), _attr(node, "max", np.inf)
        else:
            lo = float(ins[1].const) if len(ins) > 1 and ins[1] is not None else -np.inf
            hi = float(ins[2].const) if len(ins) > 2 and ins[2] is not None else np.inf
        x = ins[0]
        if lo == 0.0:
            layer = layers.ReLU(max_value=None if np.isinf(hi) else hi, name=self.lname(node))
            return self._unary(node, x, layer, nonneg=True)
        return Value(tensor=ops.clip(x.tensor, lo, hi), perm=x.perm, nonneg=lo >= 0)

    def _op_LeakyRelu(self, node, ins):
        from keras import layers

        layer = layers.LeakyReLU(negative_slope=_attr(node, "alpha", 0.01), name=self.lname(node))
        return self._unary(node, ins[0], layer)

    def _op_Sigmoid(self, node, ins):
        from keras import layers

        return self._unary(node, ins[0], layers.Activation("sigmoid", name=self.lname(node)), nonneg=True)

    def _op_Tanh(self, node, ins):
        from keras import layers

        return self._unary(node, ins[0], layers.Activation("tanh", name=self.lname(node)))

    def _op_HardSwish(self, node, ins):
        from keras import layers

        return self._unary(node, ins[0], layers.Activation("hard_swish", name=self.lname(node)))

    def _op_HardSigmoid(self, node, ins):
        from keras import ops

        x = ins[0]
        alpha, beta = _attr(node, "alpha", 0.2), _attr(node, "beta", 0.5)
        t = ops.clip(ops.add(ops.multiply(x.tensor, alpha), beta), 0.0, 1.0)
        return Value(tensor=t, perm=x.perm, nonneg=True)

    def _op_Softmax(self, node, ins):
        from keras import layers

        x = ins[0]
        axis = _attr(node, "axis", -1 if self.opset >= 13 else 1) % len(x.shape)
        if self.opset < 13 and axis != len(x.shape) - 1:
            raise ValueError("opset < 13 Softmax over more than the last axis")
        layer = layers.Softmax(axis=x.perm.index(axis), name=self.lname(node))
        return self._unary(node, x, layer, nonneg=True)


def input_layout(model) -> str:
    """ "NCHW" or "NHWC" for a 4-D image input.

    NHWC when the input feeds only Transposes to NCHW (tf2onnx's pattern) or when only its last dim
    looks like channels; otherwise NCHW, the ONNX convention (every ONNX Conv is NCHW).
    """
    vi = graph_inputs(model)[0]
    shape = static_shape(vi)
    users = [n for n in model.graph.node if vi.name in n.input]
    if users and all(n.op_type == "Transpose" and list(_attr(n, "perm", [])) == [0, 3, 1, 2] for n in users):
        return "NHWC"
    if any(n.op_type in ("Conv", "MaxPool", "AveragePool", "BatchNormalization") for n in users):
        return "NCHW"  # ONNX defines these on NCHW
    if len(shape) == 4 and shape[3] in (1, 3, 4) and shape[1] not in (1, 3, 4):
        return "NHWC"
    return "NCHW"


def _attr(node, name: str, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _same_memory_order(perm_a, perm_b, logical) -> bool:
    """True when two physical layouts of the same logical tensor are byte-identical.

    That holds when the dimensions larger than 1 appear in the same order in both layouts (for an
    NCHW map with H = W = 1, NHWC and NCHW hold the same bytes); the batch counts as larger than 1.
    """

    def order(perm):
        return [p for p in perm if p == 0 or logical[p] is None or logical[p] != 1]

    return order(perm_a) == order(perm_b)


def _safe(name: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in str(name))
    return out.strip("_") or "t"
