"""Run an ``imu-anon`` command and print the process's own peak RSS on stderr as it exits.

``wait4``'s ``ru_maxrss`` cannot be used for a child of the bench: Linux carries the
high-water mark of the memory a process had before ``exec`` (with vfork, the bench's own)
into the child's figure. ``VmHWM`` in ``/proc/self/status`` belongs to the new program only.

    python -m edge_runtime.benchmark.launch replay REC.csv --model M ...
"""

from __future__ import annotations

import atexit
import sys

MARK = "imu-anon-bench: VmHWM_kB="


def _report_peak_rss() -> None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    print(MARK + line.split()[1], file=sys.stderr, flush=True)
                    return
    except OSError:
        pass  # not Linux: the caller falls back to ru_maxrss


def main() -> int:
    atexit.register(_report_peak_rss)
    from imu_anon.cli import main as cli

    return cli(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
