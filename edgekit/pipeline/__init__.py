"""Desktop work: weight sources, train, quantize, export, evaluate, ONNX, sweep."""
