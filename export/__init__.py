"""Export: a trained run as a self-describing ONNX file, checked against PyTorch, optionally int8."""
