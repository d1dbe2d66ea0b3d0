"""The notebooks: committed without outputs, and each runs top to bottom in small mode.

Small mode (``RAGZIP_NB_SMALL=1``) is read by each notebook's parameter cell; figures go to the
folder in ``RAGZIP_NB_FIGURES`` (a temporary one here), and are checked to be real PNG images.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb"))
FIGURES = {
    "01_quickstart.ipynb": ["01_tokens_kept.png"],
    "02_ratio_vs_quality.ipynb": ["02_ratio_vs_quality.png", "02_ratio_vs_quality.json"],
    "03_break_even.ipynb": ["03_break_even.png", "03_break_even.json"],
}
NEEDS_DATA = {"02_ratio_vs_quality.ipynb", "03_break_even.ipynb"}
CELL_TIMEOUT_S = 900
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_expected_notebooks_are_there() -> None:
    assert sorted(FIGURES) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: a code cell has outputs (strip them)"
            assert cell.execution_count is None, f"{name}: a code cell has an execution count"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "RAGZIP_NB_SMALL" in params[0].source


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_top_to_bottom_in_small_mode(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if name in NEEDS_DATA:
        monkeypatch.setenv("RAGZIP_DATA_DIR", str(request.getfixturevalue("data_dir")))
    figures = tmp_path / "figures"
    monkeypatch.setenv("RAGZIP_NB_SMALL", "1")
    monkeypatch.setenv("RAGZIP_NB_FIGURES", str(figures))
    monkeypatch.setenv("RAGZIP_NB_INDEX_CACHE", str(tmp_path / "indexes"))
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    t0 = time.perf_counter()
    client.execute()
    print(f"{name}: {time.perf_counter() - t0:.0f} s in small mode")
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors
    for fig in FIGURES[name]:
        path = figures / fig
        assert path.is_file() and path.stat().st_size > 0, f"{name} did not write {fig}"
        if fig.endswith(".png"):
            assert path.read_bytes()[:8] == PNG_MAGIC
