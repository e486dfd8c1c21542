"""Accuracy-aware int8: measure what int8 costs, and keep the worst layers in float when over budget.

TFLite's QuantizationDebugger runs the int8 model beside float on the calibration images and reports
each op's quantization error; ops are ranked by RMSE / output scale (the error in units of one int8
step, the ranking TensorFlow's own debugger tutorial uses). Then 1, 2, 3, 4, 6, 8, … of the worst ops
are kept in float (`denylisted_nodes`) until the top-1 drop on labelled data is within `max_drop`
percentage points, or no further step is left, which is reported as such.

The debugger's selective model always has float32 input and output (the converter ignores
inference_input_type there): the report and the manifest say so, and a device feeds it normalised
float32, which edgelib.Model does on its own from the tensor dtype.

No files are written here.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgekit.bundle.modelcheck import load_model

Progress = Callable[[str], None]
DEBUG_IMAGES = 32  # the debugger runs every op twice per image: a few dozen images rank well enough


@dataclass(frozen=True)
class Budget:
    max_drop: float  # percentage points of top-1
    max_steps: int = 10


def accuracy(outputs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(outputs.argmax(-1) == y)) if len(y) else float("nan")


Z95 = 1.959964


def paired_drop(float_correct: np.ndarray, q_correct: np.ndarray) -> dict:
    """The top-1 drop in points with a 95 % interval that uses the pairing.

    Float and int8 see the same images, so only discordant images carry information: b = right in
    float and wrong in int8, c = the reverse; drop = (b − c) / n. The interval is Wald's for a paired
    difference with 0.5 added to every cell of the 2×2 table (Agresti & Min 2005), which keeps a
    width when b = c = 0 instead of claiming certainty from a small set."""
    f = np.asarray(float_correct, bool)
    q = np.asarray(q_correct, bool)
    n = int(f.size)
    b, c = int(np.sum(f & ~q)), int(np.sum(~f & q))
    if n == 0:
        return {"drop_points": None, "drop_ci95_points": None, "float_only_right": 0, "int8_only_right": 0}
    bb, cc, nn = b + 0.5, c + 0.5, n + 2.0
    d = (bb - cc) / nn
    se = float(np.sqrt(max((bb + cc) - (bb - cc) ** 2 / nn, 0.0))) / nn
    return {
        "drop_points": round((b - c) / n * 100, 2),
        "drop_ci95_points": [round((d - Z95 * se) * 100, 2), round((d + Z95 * se) * 100, 2)],
        "float_only_right": b,
        "int8_only_right": c,
    }


def agreement_interval(agree: np.ndarray) -> dict:
    """Top-1 agreement with its 95 % Wilson interval (needs no labels)."""
    a = np.asarray(agree, bool)
    n = int(a.size)
    if n == 0:
        return {"agreement": None, "agreement_ci95": None}
    p = float(a.mean())
    den = 1 + Z95**2 / n
    mid = (p + Z95**2 / (2 * n)) / den
    half = Z95 * float(np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))) / den
    return {"agreement": round(p, 4), "agreement_ci95": [round(mid - half, 4), round(mid + half, 4)]}


def int8_report(float_out: np.ndarray, q_out: np.ndarray, y: np.ndarray, source: str) -> dict:
    """Float vs int8 on labelled images: both top-1s (fractions), the drop in points with its paired
    95 % interval, agreement with its interval."""
    fp, qp = float_out.argmax(-1), q_out.argmax(-1)
    f1, q1 = accuracy(float_out, y), accuracy(q_out, y)
    paired = paired_drop(fp == y, qp == y)
    return {
        "data": source,
        "n": int(len(y)),
        "float_top1": round(f1, 4),
        "int8_top1": round(q1, 4),
        "drop_points": round((f1 - q1) * 100, 2),
        "drop_ci95_points": paired["drop_ci95_points"],
        "discordant": {"float_only_right": paired["float_only_right"], "int8_only_right": paired["int8_only_right"]},
        **agreement_interval(fp == qp),
    }


def rank_layers(saved_model: str, calib: np.ndarray, *, per_channel: bool = True) -> list[dict]:
    """Ops of the int8 model, worst quantization error first (QuantizationDebugger statistics)."""
    import tensorflow as tf

    from edgekit.converters import keras_tflite

    x = calib[:DEBUG_IMAGES]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=_converter(saved_model, calib, per_channel), debug_dataset=_dataset(x)
    )
    with keras_tflite.quiet_native_output():
        debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = []
    for r in csv.DictReader(io.StringIO(buf.getvalue())):
        scale = float(r["scale"]) or 1.0
        rows.append(
            {
                "tensor_name": r["tensor_name"],
                "op": r["op_name"],
                "rmse_per_scale": round(float(np.sqrt(float(r["mean_squared_error"]))) / scale, 4),
                "max_abs_error": float(r["max_abs_error"]),
                "scale": scale,
            }
        )
    rows.sort(key=lambda r: -r["rmse_per_scale"])
    return rows


def selective_model(
    saved_model: str, calib: np.ndarray, denylist: list[str], *, per_channel: bool = True
) -> bytes:
    """int8 model with the named ops kept in float (float32 I/O, see the module note)."""
    import tensorflow as tf

    from edgekit.converters import keras_tflite

    opts = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denylist))
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=_converter(saved_model, calib, per_channel),
        debug_dataset=_dataset(calib[:DEBUG_IMAGES]),
        debug_options=opts,
    )
    with keras_tflite.quiet_native_output():
        return debugger.get_nondebug_quantized_model()


def _steps(n: int, max_steps: int) -> list[int]:
    """1, 2, 3, 4, 6, 9, … layers, ending at n − 1: with every op in float the debugger has no
    quantized model left to build (that model is `--quantize float32`)."""
    last = n - 1
    ks, k = [], 1
    while k < last and len(ks) < max_steps - 1:
        ks.append(k)
        k = k + 1 if k < 4 else int(k * 1.5)
    return [*ks, last] if last >= 1 else []


def host_latency_ms(tflite: bytes, runs: int = 30) -> float:
    """Median single-thread invoke time on this host (a cost indication, not a benchmark)."""
    m = load_model(tflite, threads=1)
    x = np.zeros(m.input_shape, dtype=m.input["dtype"])
    for _ in range(3):
        m.invoke_raw(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        m.invoke_raw(x)
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1000, 3)


def fit_budget(
    saved_model: str,
    int8: bytes,
    *,
    calib: np.ndarray,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    float_out: np.ndarray,
    budget: Budget,
    per_channel: bool = True,
    progress: Progress = lambda _m: None,
) -> tuple[bytes, dict]:
    """(model to ship, report) through the converter: QuantizationDebugger ranking and denylists."""
    return search_budget(
        int8,
        rank=lambda: rank_layers(saved_model, calib, per_channel=per_channel),
        build=lambda deny: selective_model(saved_model, calib, deny, per_channel=per_channel),
        x_eval=x_eval, y_eval=y_eval, float_out=float_out, budget=budget, progress=progress,
    )  # fmt: skip


def search_budget(
    int8: bytes,
    *,
    rank: Callable[[], list[dict]],
    build: Callable[[list[str]], bytes],
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    float_out: np.ndarray,
    budget: Budget,
    progress: Progress = lambda _m: None,
) -> tuple[bytes, dict]:
    """(model to ship, report): the full int8 model when within budget, else the best selective one.

    Either back end: `rank()` lists ops worst first, `build(names)` quantizes with those in float."""
    base_out = load_model(int8).predict(x_eval)
    f1 = accuracy(float_out, y_eval)
    base_drop = (f1 - accuracy(base_out, y_eval)) * 100
    report: dict = {
        "max_drop_points": budget.max_drop,
        "full_int8": {
            "drop_points": round(base_drop, 2),
            "size_bytes": len(int8),
            "host_latency_ms": host_latency_ms(int8),
        },
        "float_layers": [],
        "steps": [],
    }
    if base_drop <= budget.max_drop:
        report.update(budget_met=True, selective=False, drop_points=round(base_drop, 2))
        return int8, report

    progress(
        f"int8 drops {base_drop:.2f} points > {budget.max_drop}: ranking layers by their int8 error"
    )
    ranking = rank()
    report["ranking"] = ranking[:20]
    best = (base_drop, 0, int8)
    for k in _steps(len(ranking), budget.max_steps):
        deny = [r["tensor_name"] for r in ranking[:k]]
        progress(f"keeping {k} worst layer(s) in float")
        try:
            flat = build(deny)
        except ValueError as exc:  # the debugger refuses some denylists; report and stop there
            report["steps"].append({"float_layers": k, "error": str(exc).splitlines()[0]})
            break
        drop = (f1 - accuracy(load_model(flat).predict(x_eval), y_eval)) * 100
        report["steps"].append({"float_layers": k, "drop_points": round(drop, 2), "size_bytes": len(flat)})
        if drop < best[0] - 1e-9:
            best = (drop, k, flat)
        if drop <= budget.max_drop:
            break
    drop, k, flat = best
    met = drop <= budget.max_drop
    report.update(
        budget_met=met,
        selective=k > 0,
        drop_points=round(drop, 2),
        float_layers=[{"tensor_name": r["tensor_name"], "op": r["op"]} for r in ranking[:k]],
    )
    if k:
        lat = host_latency_ms(flat)
        report.update(
            size_bytes=len(flat),
            size_change_bytes=len(flat) - len(int8),
            host_latency_ms=lat,
            host_latency_change=round(lat / max(report["full_int8"]["host_latency_ms"], 1e-9), 3),
        )
        if load_model(flat).input["dtype"] == np.float32:
            report.update(
                io="float32",
                io_note=(
                    "the selective model has float32 input and output (the quantization debugger always "
                    "writes it so): feed normalised float32 images, as manifest preprocessing describes"
                ),
            )
    if not met:
        report["note"] = (
            f"budget not met: the best found loses {drop:.2f} points with {k} layer(s) in float "
            f"(full int8 loses {base_drop:.2f}); more calibration data or a larger --max-drop may help"
        )
    return flat, report


def _converter(saved_model: str, calib: np.ndarray, per_channel: bool):
    import tensorflow as tf

    from edgekit.converters import keras_tflite

    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    keras_tflite.configure(
        conv,
        "int8",
        representative=lambda: (calib[i : i + 1] for i in range(len(calib))),
        io_type="float32",
        per_channel=per_channel,
    )
    return conv


def _dataset(x: np.ndarray):
    def gen():
        for i in range(len(x)):
            yield [x[i : i + 1].astype(np.float32)]

    return gen


# --------------------------------------------------------------------------- export hooks


def labelled_eval_data(eval_data, calib, labels) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(x, y in model label space, description) for accuracy at export, or None without labels.

    Held-out images from a run come first; otherwise labelled calibration images (class folders or
    builtin:NAME) whose class names are among the model's labels."""
    from edgekit.data.datasets import align_labels
    from edgekit.errors import InputDataError

    for batch, what in ((eval_data, "held-out"), (calib, "calibration images")):
        if batch is None or batch.y is None or not len(batch.y):
            continue
        try:
            y = align_labels(batch.class_names, labels)[batch.y]
        except InputDataError:
            continue
        return batch.x, y, f"{batch.source} ({what})" if what == "calibration images" else batch.source
    return None


def export_accuracy(
    saved_model: str,
    int8: bytes,
    *,
    calib: np.ndarray,
    data: tuple[np.ndarray, np.ndarray, str] | None,
    float_out: np.ndarray | None,
    max_drop: float | None,
    per_channel: bool = True,
    search: Callable | None = None,
    progress: Progress = lambda _m: None,
) -> tuple[bytes, dict]:
    """Float vs int8 accuracy for the manifest, and the --max-drop search when asked.

    `search` is the back end's budget search (same arguments as fit_budget's after `int8`); the
    converter's QuantizationDebugger search when None."""
    from edgekit.errors import UsageError

    if data is None:
        raise UsageError(
            "--max-drop needs labelled images to measure accuracy",
            hint="export from a run folder, or pass --calibration DIR/<class>/*.jpg or builtin:NAME matching the labels",
        )
    x, y, source = data
    report = int8_report(float_out, load_model(int8).predict(x), y, source)
    if max_drop is None:
        return int8, report
    if search is None:

        def search(model, **kw):
            return fit_budget(saved_model, model, calib=calib, per_channel=per_channel, **kw)

    flat, budget = search(int8, x_eval=x, y_eval=y, float_out=float_out, budget=Budget(max_drop), progress=progress)
    if flat is not int8:
        full_top1 = report["int8_top1"]
        report = int8_report(float_out, load_model(flat).predict(x), y, source)
        report["int8_top1_full"] = full_top1
    report["max_drop"] = budget
    return flat, report
