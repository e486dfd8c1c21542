"""Float `.tflite` -> quantized `.tflite` with the LiteRT Quantizer (`ai-edge-quantizer`), no TensorFlow.

One format hop: bytes of a float model (edgekit's own float32 export, a third-party model, an ONNX
import) plus calibration images in, bytes of the quantized model out. The quantizer needs only numpy,
scipy and `ai-edge-litert==2.3.0`; it is an optional extra (`pip install 'edgekit[quantizer]'`).

Activation ranges. The quantizer's own calibrator keeps an exponential moving average (factor 0.95)
of each image's min/max: with one image per step, the range follows the last ~20 images and clips the
rest. `ranges="minmax"` (edgekit's default) replaces that with the true min/max over all calibration
images, as TFLite's converter does; `"percentile"` clips each activation (never the model input) to
the given percentile of all its values; `"ema"` is the quantizer's own behaviour, kept for comparison.
Weights: `weights="min_max"` (symmetric, max |w|), `"mse"` or `"octav"` (the quantizer's clipping
searches; MSE exists only for convolutions and dense layers, the rest stay min/max).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

PACKAGE = "ai-edge-quantizer"
PIN = "0.10.0"
RANGES = ("minmax", "percentile", "ema")
WEIGHTS = ("min_max", "mse", "octav")
PRECISIONS = ("int8", "dynamic")
_ALGORITHM = {"min_max": "min_max_uniform_quantize", "mse": "MSE", "octav": "OCTAV"}
_MSE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


class QuantizerMissing(ImportError):
    """ai-edge-quantizer cannot be imported."""


class QuantizeFailed(RuntimeError):
    """The quantizer refused or crashed on this model."""


@dataclass(frozen=True)
class Recipe:
    """What the LiteRT Quantizer is asked for; `to_dict()` goes into the manifest."""

    precision: str = "int8"  # int8 = static_wi8_ai8; dynamic = dynamic_wi8_afp32
    per_channel: bool = True
    ranges: str = "minmax"
    weights: str = "min_max"
    percentile: float = 99.99
    float_ops: tuple[str, ...] = field(default_factory=tuple)  # output tensor names kept in float
    activation_bits: int = 8  # 16: static_wi8_ai16 (int16 activations, symmetric; slow reference kernels)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"the LiteRT Quantizer makes {' or '.join(PRECISIONS)}; received {self.precision!r}")
        if self.ranges not in RANGES:
            raise ValueError(f"ranges must be one of {', '.join(RANGES)}; received {self.ranges!r}")
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}; received {self.weights!r}")
        if self.activation_bits not in (8, 16):
            raise ValueError(f"activation_bits must be 8 or 16; received {self.activation_bits!r}")

    @property
    def name(self) -> str:
        if self.precision == "dynamic":
            return "dynamic_wi8_afp32"
        return f"static_wi8_ai{self.activation_bits}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["float_ops"] = list(self.float_ops)
        d["recipe"] = self.name
        if self.precision != "int8" or self.ranges != "percentile":
            d.pop("percentile")
        return d

    def aeq_recipe(self) -> list[dict]:
        """The quantizer's JSON recipe: one scope for every op, per-op overrides, float ops last."""
        gran = "CHANNELWISE" if self.per_channel else "TENSORWISE"
        weight = {"num_bits": 8, "symmetric": True, "granularity": gran, "dtype": "INT"}
        if self.precision == "int8":
            op_config = {
                "activation_tensor_config": {
                    "num_bits": self.activation_bits,
                    "symmetric": self.activation_bits == 16,  # LiteRT's int16 kernels are symmetric only
                    "granularity": "TENSORWISE",
                    "dtype": "INT",
                },
                "weight_tensor_config": weight,
                "compute_precision": "INTEGER",
                "explicit_dequantize": False,
            }
        else:
            op_config = {"weight_tensor_config": weight, "compute_precision": "INTEGER", "explicit_dequantize": False}
        algo = _ALGORITHM[self.weights]
        base = "min_max_uniform_quantize" if self.weights == "mse" else algo
        recipe = [{"regex": ".*", "operation": "*", "algorithm_key": base, "op_config": op_config}]
        if self.weights == "mse":
            recipe += [
                {"regex": ".*", "operation": op, "algorithm_key": algo, "op_config": op_config} for op in _MSE_OPS
            ]
        recipe += [
            {"regex": f"^{re.escape(name)};$", "operation": "*", "algorithm_key": "no_quantize"}
            for name in self.float_ops
        ]
        return recipe


def require():
    """The ai_edge_quantizer package, or QuantizerMissing with what to install."""
    try:
        with _quiet():
            import ai_edge_quantizer  # noqa: F401
            from ai_edge_quantizer import quantizer
    except ImportError as exc:
        raise QuantizerMissing(
            f"{PACKAGE} is not installed ({exc.__class__.__name__}: {exc}); "
            f"install it with: pip install 'edgekit[quantizer]' ({PACKAGE}=={PIN})"
        ) from exc
    return quantizer


def available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("ai_edge_quantizer") is not None
    except (ImportError, ValueError):
        return False


def version() -> str | None:
    try:
        from importlib.metadata import version as _v

        return _v(PACKAGE)
    except Exception:
        return None


def quantize(float_tflite: bytes, recipe: Recipe, calib: np.ndarray | None = None) -> bytes:
    """Quantize a float model; int8 needs calibration images (normalised float32 NHWC)."""
    quantizer = require()
    try:
        with _quiet():
            qt = quantizer.Quantizer(bytearray(float_tflite), recipe.aeq_recipe())
            result = None
            if qt.need_calibration:
                if calib is None or not len(calib):
                    raise QuantizeFailed("int8 with the LiteRT Quantizer needs calibration images")
                result = activation_ranges(float_tflite, recipe, calib)
            out = qt.quantize(result, enable_progress_report=False).quantized_model
    except (QuantizerMissing, QuantizeFailed):
        raise
    except Exception as exc:
        raise QuantizeFailed(f"the LiteRT Quantizer failed: {exc}".splitlines()[0]) from exc
    return bytes(out)


def activation_ranges(float_tflite: bytes, recipe: Recipe, calib: np.ndarray) -> dict:
    """The quantizer's calibration result ({tensor name: {min, max}}) under `recipe.ranges`."""
    require()
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    rm = recipe_manager.RecipeManager()
    rm.load_quantization_recipe(recipe.aeq_recipe())
    update = qsv_utils.moving_average_update if recipe.ranges == "ema" else qsv_utils.min_max_update
    cal = calibrator.Calibrator(bytes(float_tflite), num_threads=os.cpu_count() or 1, qsv_update_func=update)
    key, name = _signature(float_tflite)
    cal.calibrate({key: [{name: calib[i : i + 1].astype(np.float32)} for i in range(len(calib))]}, rm)
    qsvs = cal.get_model_qsvs()
    if recipe.ranges == "percentile":
        qsvs = _percentile_ranges(float_tflite, qsvs, calib, recipe.percentile)
    return qsvs


def _percentile_ranges(float_tflite: bytes, qsvs: dict, calib: np.ndarray, pct: float) -> dict:
    """Clip every per-tensor activation range (the model input excepted) to percentile `pct`.

    Exact: the global top-k values are among every image's own top-k, so only those are kept."""
    interp = _interpreter(float_tflite, preserve=True)
    inp = interp.get_input_details()[0]
    wanted = {
        d["name"]: d["index"]
        for d in interp.get_tensor_details()
        if d["name"] in qsvs and np.size(qsvs[d["name"]].get("min", 0)) == 1 and d["index"] != inp["index"]
    }
    if not wanted:
        return qsvs
    tails: dict[str, tuple[list, list, int]] = {n: ([], [], 0) for n in wanted}
    sizes = {}
    for i in range(len(calib)):
        interp.set_tensor(inp["index"], calib[i : i + 1].astype(np.float32))
        interp.invoke()
        for n, idx in wanted.items():
            v = interp.get_tensor(idx).ravel()
            sizes[n] = v.size
            k = max(1, int(np.ceil((1 - pct / 100) * v.size * len(calib))))
            k = min(k, v.size)
            lo, hi, _ = tails[n]
            lo.append(np.partition(v, k - 1)[:k].copy())
            hi.append(np.partition(v, v.size - k)[v.size - k :].copy())
    out = dict(qsvs)
    for n in wanted:
        lo, hi, _ = tails[n]
        k = max(1, int(np.ceil((1 - pct / 100) * sizes[n] * len(calib))))
        lo_all, hi_all = np.concatenate(lo), np.concatenate(hi)
        vmin = np.partition(lo_all, min(k, lo_all.size) - 1)[min(k, lo_all.size) - 1]
        vmax = np.partition(hi_all, hi_all.size - min(k, hi_all.size))[hi_all.size - min(k, hi_all.size)]
        old = qsvs[n]
        out[n] = {
            **old,
            "min": np.full_like(old["min"], min(float(vmin), 0.0)),
            "max": np.full_like(old["max"], max(float(vmax), 0.0)),
        }
    return out


def tensor_errors(float_tflite: bytes, quant_tflite: bytes, x: np.ndarray) -> list[dict]:
    """Every quantized op output of `quant_tflite`, worst first: RMSE against the float model's tensor
    of the same name, in units of its int8 step (the ranking TFLite's own quantization debugger uses)."""
    fi = _interpreter(float_tflite, preserve=True)
    qi = _interpreter(quant_tflite, preserve=True)
    fnames = {d["name"]: d for d in fi.get_tensor_details()}
    ops = {}
    for op in qi._get_ops_details():
        for t in op["outputs"]:
            ops[t] = op["op_name"]
    pairs = []
    for d in qi.get_tensor_details():
        scale = d["quantization"][0]
        if d["index"] in ops and scale and d["name"] in fnames and d["dtype"] in (np.int8, np.int16):
            pairs.append((d, fnames[d["name"]]))
    sq = {d["name"]: 0.0 for d, _ in pairs}
    count = 0
    fin, qin = fi.get_input_details()[0], qi.get_input_details()[0]
    for i in range(len(x)):
        xi = x[i : i + 1].astype(np.float32)
        fi.set_tensor(fin["index"], xi)
        fi.invoke()
        qi.set_tensor(qin["index"], _quantize_like(xi, qin))
        qi.invoke()
        for d, f in pairs:
            scale, zp = d["quantization"]
            q = (qi.get_tensor(d["index"]).astype(np.float32) - zp) * scale
            ref = fi.get_tensor(f["index"])
            if ref.shape == q.shape:
                sq[d["name"]] += float(np.mean((q - ref) ** 2))
        count += 1
    rows = [
        {
            "tensor_name": d["name"],
            "op": ops[d["index"]],
            "rmse_per_scale": round(float(np.sqrt(sq[d["name"]] / max(count, 1))) / d["quantization"][0], 4),
            "scale": float(d["quantization"][0]),
        }
        for d, _ in pairs
    ]
    rows.sort(key=lambda r: -r["rmse_per_scale"])
    return rows


def _quantize_like(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zp = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(detail["dtype"])


def _signature(float_tflite: bytes) -> tuple[str, str]:
    interp = _interpreter(float_tflite)
    sigs = interp.get_signature_list()
    if not sigs:
        raise QuantizeFailed("the model has no signature: the LiteRT Quantizer calibrates through signatures")
    key = next(iter(sigs))
    inputs = sigs[key]["inputs"]
    if len(inputs) != 1:
        raise QuantizeFailed(f"the model has {len(inputs)} inputs; an image classifier has one")
    return key, inputs[0]


def _interpreter(content: bytes, preserve: bool = False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the XNNPACK delegate: every op stays visible (names, intermediate tensors).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": that is the point here
        interp = Interpreter(
            model_content=bytes(content),
            experimental_preserve_all_tensors=preserve,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    interp.allocate_tensors()
    return interp


@contextlib.contextmanager
def _quiet():
    """The quantizer prints progress bars and reports on stdout/stderr: keep them off the CLI's screen."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
