"""The gateway packages must import without torch, scipy or matplotlib."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "scipy", "matplotlib", "onnx", "tqdm")


def _modules(package: str) -> list[str]:
    found = pkgutil.walk_packages([str(REPO / package)], prefix=f"{package}.")
    return [package] + [m.name for m in found if not m.name.endswith("__main__")]


@pytest.mark.parametrize("package", ["edge_runtime", "firmware_bridge", "imu_anon"])
def test_each_gateway_module_imports_without_heavy_dependencies(package: str) -> None:
    names = sorted(set(_modules(package)))
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{package} pulled heavy modules: {out.stdout.strip()}"


def test_generic_package_names_resolve_to_this_repository() -> None:
    import export
    import trainer

    for mod in (trainer, export):
        assert Path(mod.__file__).resolve().is_relative_to(REPO), mod.__file__


def test_run_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom imu_anon.cli import main\n"
        "try:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'LEAN', file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stderr.strip().endswith("LEAN"), out.stderr
