"""ONNX -> TFLite: the back ends, how to pick one, and structural facts about the result.

Back ends (each says why when it cannot run here, with exact versions):
  edgekit   converters/onnx_keras.py builds a Keras NHWC model op by op, then the same Keras -> TFLite
            path `edgekit export` uses (converters/keras_tflite.py). Runs in the main environment.
  onnx2tf   onnx2tf 1.29.24 in an isolated virtual environment (converters/onnx_onnx2tf.py): it pins
            TensorFlow 2.19 / numpy 1.26 / protobuf 4, which would break the main environment.
  onnx-tf   the original backend (converters/onnx_onnxtf.py): cannot import with onnx >= 1.14 / TF 2.21.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

BACKENDS = ("auto", "edgekit", "onnx2tf", "onnx-tf")


@dataclass
class Converted:
    """What a back end produced: one flatbuffer per precision plus what it knows about the graph."""

    backend: str
    tflite: dict[str, bytes]
    keras_model: object = None  # the edgekit back end's Keras model (saved as the bundle's float model)
    notes: dict = field(default_factory=dict)


def convert_edgekit(
    model,
    precisions: Iterable[str],
    *,
    name: str,
    representative: Callable[[], Iterable[np.ndarray]] | None,
    io_type: str = "int8",
    progress: Callable[[str], None] = lambda _m: None,
) -> Converted:
    """ONNX ModelProto -> Keras (onnx_keras) -> TFLite per precision (keras_tflite)."""
    from edgekit.converters import keras_tflite, onnx_keras

    progress("importing ONNX graph (edgekit)")
    km, report = onnx_keras.convert(model, name)
    out: dict[str, bytes] = {}
    with keras_tflite.saved_model(km) as saved:
        for p in precisions:
            progress(f"converting to {p}")
            out[p] = keras_tflite.convert_saved_model(
                saved, p, representative=representative if p == "int8" else None, io_type=io_type
            )
    notes = {
        "folded_into_conv": report.folded,
        "onnx_ops": report.ops,
        "transposes_emitted": report.transposes_emitted,
        "onnx_input_layout": report.input_layout,
    }
    return Converted("edgekit", out, km, notes)


def op_counts(tflite: bytes) -> dict[str, int]:
    """Builtin op name -> count in a `.tflite`, read before any delegate rewrites the graph."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    return dict(Counter(d["op_name"] for d in it._get_ops_details()))


def backend_status() -> dict[str, dict]:
    """Every back end with available/reason, for `edgekit convert --backends`."""
    from edgekit.converters import onnx_onnx2tf, onnx_onnxtf

    return {
        "edgekit": {"available": True, "reason": "built in (onnx + TensorFlow of this environment)"},
        "onnx2tf": onnx_onnx2tf.status(),
        "onnx-tf": onnx_onnxtf.status(),
    }
