"""Image data: datasets and decoding without TensorFlow (datasets.py), tf.data pipelines (tfdata.py)."""
