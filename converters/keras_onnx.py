"""Keras -> ONNX with tf2onnx (1.17.0 works with TensorFlow 2.21 / Keras 3 through a tf.function).

The exported graph keeps the Keras NHWC input (tf2onnx adds one Transpose after it) and is folded
(converters/onnx_fold.py) so BatchNorm left as Mul/Add after depthwise convolutions does not cost int8
accuracy later.
"""

from __future__ import annotations

OPSET = 17


def to_onnx(keras_model, *, opset: int = OPSET, input_name: str = "input", output_name: str = "logits"):
    """(ModelProto, FoldReport) for a single-input Keras image model."""
    import tensorflow as tf
    import tf2onnx

    from edgekit.converters.keras_tflite import quiet_native_output
    from edgekit.converters.onnx_fold import fold

    shape = (None, *keras_model.inputs[0].shape[1:])
    spec = [tf.TensorSpec(shape, tf.float32, name=input_name)]

    @tf.function(input_signature=spec)
    def fn(x):
        return {output_name: keras_model(x, training=False)}

    with quiet_native_output():
        model, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset)
    return fold(model)
