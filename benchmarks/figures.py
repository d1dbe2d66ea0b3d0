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
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbclient
import nbformat

from ragzip.core.machine import cpu_model

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
    records_file = OUT / "figures.json"
    records = json.loads(records_file.read_text()) if records_file.is_file() else {}
    where = f"{datetime.date.today().isoformat()}, {cpu_model()}, {os.cpu_count()} cores"
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if args.only and path.name not in args.only:
            continue
        seconds = run_notebook(path, args.small)
        mode = "small mode (a smoke test, not results)" if args.small else "full mode"
        records[path.name] = f"{mode}, {seconds:.0f} s, {where}"
        print(path.name, records[path.name], flush=True)
    env = dict(os.environ, RAGZIP_INSPECT_SCREENSHOT=str(OUT / "inspect.png"))
    test = "tests/server/test_inspect.py::test_in_headless_chromium_kept_text_is_highlighted"
    subprocess.run([sys.executable, "-m", "pytest", "-q", test], cwd=ROOT, env=env, check=True)
    records["inspect.png"] = f"the inspector's browser test in headless Chromium, {where}"
    records_file.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    (OUT / "README.md").write_text(
        "# Figures\n\nRendered by `python benchmarks/figures.py` (`--small`: the notebooks' "
        "quick mode; `--only NAME.ipynb`: one notebook), recorded in `figures.json`:\n\n"
        + "\n".join(f"- `{name}`: {text}" for name, text in sorted(records.items()))
        + "\n\nEach notebook figure's JSON beside it holds the numbers plotted.\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
