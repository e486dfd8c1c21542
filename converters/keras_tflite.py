"""Keras -> TFLite (float32, float16, dynamic-range, full int8).

Goes through `model.export(dir)` + `TFLiteConverter.from_saved_model`: with TF 2.21 / Keras 3,
`from_concrete_functions` silently writes a float model that outputs NaN and its int8 fails at invoke
(READ_VARIABLE), so that path is never used. The SavedModel is written once per Keras model and reused
for every precision.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator

import numpy as np

Representative = Callable[[], Iterable[np.ndarray]]


class ConversionError(RuntimeError):
    """The TFLite converter failed; `log` holds what it printed."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


@contextlib.contextmanager
def saved_model(model) -> Iterator[str]:
    """A temporary SavedModel of a Keras model (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="edgekit-savedmodel-") as tmp:
        path = os.path.join(tmp, "saved_model")
        with quiet_native_output():
            model.export(path, format="tf_saved_model", verbose=False)
        yield path


def convert_saved_model(
    path: str,
    precision: str,
    *,
    representative: Representative | None = None,
    io_type: str = "int8",
    per_channel: bool = True,
) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(path)
    configure(converter, precision, representative=representative, io_type=io_type, per_channel=per_channel)
    with quiet_native_output() as log:
        try:
            return converter.convert()
        except Exception as exc:
            raise ConversionError(
                f"TFLite conversion to {precision} failed: {exc}".splitlines()[0], log()
            ) from exc


def convert(model, precision: str, **kwargs) -> bytes:
    """Convert a Keras model to one precision (see convert_saved_model for the options)."""
    with saved_model(model) as path:
        return convert_saved_model(path, precision, **kwargs)


def configure(converter, precision: str, *, representative=None, io_type="int8", per_channel=True) -> None:
    """Apply one precision's settings to a TFLiteConverter (shared by every front end)."""
    import tensorflow as tf

    if precision == "float32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        pass  # int8 weights, float activations
    elif precision == "int8":
        if representative is None:
            raise ValueError("int8 conversion needs a representative dataset")

        def _rep():
            for x in representative():
                yield [np.asarray(x, dtype=np.float32)]

        converter.representative_dataset = _rep
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io_type != "float32":
            dtype = {"int8": tf.int8, "uint8": tf.uint8}[io_type]
            converter.inference_input_type = dtype
            converter.inference_output_type = dtype
        if not per_channel:
            converter._experimental_disable_per_channel = True
    else:
        raise ValueError(f"unknown precision {precision!r}")


@contextlib.contextmanager
def quiet_native_output():
    """Send the converter's C++ and Python chatter (MLIR progress, absl lines) to a temporary file.

    Yields a function returning what was captured, for error messages.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        captured: list[str] = []

        def log() -> str:
            return "".join(captured)

        try:
            yield log
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", errors="replace")[-4000:])
