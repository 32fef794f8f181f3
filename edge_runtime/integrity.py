"""Integrity of model files: a ``NAME.onnx.sha256`` file beside ``NAME.onnx``.

The sidecar uses ``sha256sum``'s format (``<hex>  <file name>``), so an operator can check
it by hand with ``sha256sum -c NAME.onnx.sha256`` in the model's folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from edge_runtime.errors import IntegrityError


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(model_path: str | Path) -> Path:
    path = Path(model_path)
    return path.with_name(path.name + ".sha256")


def write_sidecar(model_path: str | Path) -> Path:
    path = Path(model_path)
    out = sidecar_path(path)
    out.write_text(f"{file_sha256(path)}  {path.name}\n", encoding="ascii")
    return out


def verify_sidecar(model_path: str | Path) -> str:
    """Return the file's sha256 when it matches its sidecar; raise IntegrityError otherwise."""
    path = Path(model_path)
    side = sidecar_path(path)
    if not path.is_file():
        raise IntegrityError(f"{path}: no such model file")
    if not side.is_file():
        raise IntegrityError(
            f"{path}: no {side.name} beside it, so the file cannot be checked; copy the .sha256 "
            "written by 'imu-anon export' along with the model"
        )
    try:
        expected = side.read_text(encoding="ascii").split()[0].lower()
    except (UnicodeDecodeError, IndexError):
        raise IntegrityError(f"{side}: not a sha256 file ('<64 hex digits>  {path.name}')") from None
    actual = file_sha256(path)
    if actual != expected:
        raise IntegrityError(
            f"{path}: sha256 {actual[:16]}... does not match {side.name} ({expected[:16]}...); "
            "the file is corrupt or was replaced: copy it again from the export"
        )
    return actual
