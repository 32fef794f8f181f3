"""The gateway runtime: numpy + onnxruntime + paho-mqtt + pyserial, never torch.

The data path reads like the product: source -> decode -> window -> anonymise -> sink.
``card``, ``layout`` and ``windowing`` are the numpy-only contract that the trainer imports too.
"""
