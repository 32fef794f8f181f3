"""The model card's code_version names the code an export ran: edited code says so, a freshly
written model beside it (the fp32 file before the int8 one) does not."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _version(checkout: Path) -> str:
    out = subprocess.run([sys.executable, "-c", "from export.writer import code_version; print(code_version())"],
                         cwd=checkout, env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_released_artefacts_do_not_make_the_code_dirty(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], check=True, timeout=120)
    clean = _version(clone)
    assert "+g" in clean and not clean.endswith(".dirty")
    (clone / "models" / "hapt-aae.onnx").write_bytes(b"a freshly exported model")
    (clone / "reports" / "hapt" / "README.md").write_text("new figures\n")
    assert _version(clone) == clean
    with open(clone / "export" / "writer.py", "a") as fh:
        fh.write("\n# an edit\n")
    assert _version(clone) == clean + ".dirty"
