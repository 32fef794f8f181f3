"""The command line as a Unix tool: a reader that goes away ends a command quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_closed_stdout_pipe_ends_inspect_without_a_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like 'imu-anon inspect M | head' after head has exited
    try:
        proc = subprocess.run([sys.executable, "-m", "imu_anon", "inspect", str(REPO / "models" / "hapt-aae.onnx")],
                              cwd=REPO, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == 128 + 13  # what a tool killed by SIGPIPE reports to the shell
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr
