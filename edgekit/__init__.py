"""edgekit: from a Keras image classifier to a measured int8 TFLite model on a real edge device.

Nothing heavy is imported here: `edgekit --help` and the device commands must stay TensorFlow-free.
"""

__version__ = "0.1.0"
