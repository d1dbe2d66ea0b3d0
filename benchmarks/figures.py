"""Render the figures people look at into docs/images: the notebooks' plots (tokens kept,
ratio vs quality, break-even) and a screenshot of the proxy's inspector page.

    python benchmarks/figures.py            # full notebooks (500 NQ questions; long on a CPU)
    python benchmarks/figures.py --small    # each notebook's small mode, minutes

The notebooks run top to bottom with nbclient, as the test suite runs them, with their figures
folder pointed at docs/images; the screenshot comes from the inspector's browser test
(tests/server/test_inspect.py, Debian's chromium). Each figure's JSON beside it records what
was measured; docs/images/README.md says which mode and machine made them.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import nbclient
import nbformat

from ragzip.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"



def run_notebook(path: Path, small: bool) -> float:
    """Execute one notebook in place of its outputs (the file on disk is not changed)."""
    os.environ["RAGZIP_NB_SMALL"] = "1" if small else "0"
    os.environ["RAGZIP_NB_FIGURES"] = str(OUT)
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(
        nb, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="the notebooks' small mode")
    parser.add_argument("--only", nargs="*", help="notebook file names to run (default: all)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    lines = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if args.only and path.name not in args.only:
            continue
        seconds = run_notebook(path, args.small)
        lines.append(f"- `{path.name}`: {'small' if args.small else 'full'} mode, {seconds:.0f} s")
        print(lines[-1], flush=True)
    env = dict(os.environ, RAGZIP_INSPECT_SCREENSHOT=str(OUT / "inspect.png"))
    test = "tests/server/test_inspect.py::test_in_headless_chromium_kept_text_is_highlighted"
    subprocess.run([sys.executable, "-m", "pytest", "-q", test], cwd=ROOT, env=env, check=True)
    lines.append("- `inspect.png`: the inspector's browser test, headless Chromium")
    today = datetime.date.today().isoformat()
    (OUT / "README.md").write_text(
        "# Figures\n\nRendered by `python benchmarks/figures.py"
        + (" --small" if args.small else "")
        + f"` on {today}, {cpu_model()}, {os.cpu_count()} cores:\n\n"
        + "\n".join(lines)
        + "\n\nEach PNG's JSON beside it holds the numbers plotted.\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
