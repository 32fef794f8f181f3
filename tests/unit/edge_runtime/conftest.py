"""Fixtures of the runtime's unit tests: a small valid ONNX model (tests/model_factory.py)."""

from model_factory import onnx_model  # noqa: F401 (a fixture, used by name)
