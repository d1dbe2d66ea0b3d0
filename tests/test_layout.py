"""The four folders form one installed package, and nothing is importable under a bare name."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
FOLDERS = {folder: pkg.replace(".", "/") for pkg, folder in PACKAGE_DIR["package-dir"].items()}
"""Source folder -> its path inside the wheel."""


def test_subpackages_import_under_ragzip_only() -> None:
    import ragzip.compressors
    import ragzip.retrievers
    import ragzip.server

    assert Path(ragzip.compressors.__file__).parent == ROOT / "compressors"
    assert Path(ragzip.retrievers.__file__).parent == ROOT / "retrievers"
    assert Path(ragzip.server.__file__).parent == ROOT / "server"
    for bare in ("compressors", "retrievers", "server"):
        assert bare not in sys.modules, f"bare {bare!r} was imported"


def _source_modules() -> set[str]:
    """Every .py file of the source tree, as its path inside the wheel."""
    out = set()
    for folder, prefix in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            out.add(f"{prefix}/{path.relative_to(ROOT / folder).as_posix()}")
    return out


@pytest.mark.slow
def test_wheel_installs_in_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps"]
    built = subprocess.run(  # verbose: the build itself says nothing to fix, no deprecated field
        [*pip_wheel, "--no-build-isolation", "-v", "-w", str(dist)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "Warning" not in built.stdout + built.stderr
    (wheel,) = dist.glob("ragzip-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = _source_modules() - names
    assert not missing, f"not in the wheel (add the subpackage to pyproject): {missing}"
    assert "ragzip/py.typed" in names
    weights = {
        f"ragzip/{p.relative_to(ROOT).as_posix()}"
        for p in (ROOT / "compressors" / "weights").glob("*/*")
        if p.suffix in (".json", ".safetensors")
    }
    assert weights and not weights - names, f"weights not in the wheel: {weights - names}"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True)
    code = (
        "import sys, ragzip, ragzip.compressors, ragzip.retrievers, ragzip.server\n"
        "assert not {'compressors', 'retrievers', 'server'} & set(sys.modules)\n"
        "print(ragzip.__version__, ragzip.compressors.__name__)\n"
    )
    out = subprocess.run(
        [str(py), "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    assert "ragzip.compressors" in out.stdout
