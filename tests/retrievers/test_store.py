"""Index replacement is atomic at every instant: a writer killed at any filesystem step leaves
the old or the new index at the path (recovered on the next load), never nothing or a mix, and
the next save removes every temporary it left."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ragzip.retrievers import HybridIndex

from .conftest import beside

BUILD = textwrap.dedent(
    """
    import numpy as np
    from ragzip.retrievers import HybridIndex
    from ragzip.core.types import Passage

    def build(n):
        rng = np.random.default_rng(n)
        chunks = [Passage(f"passage {i} about topic {i % 5}", id=f"c{i}") for i in range(n)]
        vectors = rng.normal(size=(n, 8)).astype("float32")
        return HybridIndex.from_embeddings(chunks, vectors, progress=False, name="random-8")
    """
)
_scope: dict[str, Any] = {}
exec(BUILD, _scope)


def build(n: int) -> HybridIndex:
    """A small index of ``n`` chunks with random vectors (no embedding model needed)."""
    index: HybridIndex = _scope["build"](n)
    return index


CRASH = textwrap.dedent(
    """
    import os, shutil, sys
    from pathlib import Path

    target, step = Path(sys.argv[1]), int(sys.argv[2])
    new = build(7)
    calls = 0

    def crashing(fn):
        def wrapper(*args, **kwargs):
            global calls
            calls += 1
            if calls == step:
                os._exit(9)  # killed: no cleanup, no finally blocks
            return fn(*args, **kwargs)
        return wrapper

    for name in ("replace", "symlink", "rmdir", "mkdir", "unlink", "fsync"):
        setattr(os, name, crashing(getattr(os, name)))
    shutil.rmtree = crashing(shutil.rmtree)
    new.save(target)
    """
)


@pytest.mark.parametrize("start", ["link", "plain folder", "empty folder"])
def test_killed_at_every_step_leaves_an_index(tmp_path: Path, start: str) -> None:
    script = tmp_path / "crash.py"
    script.write_text(BUILD + CRASH)
    source = build(4).save(tmp_path / "source").resolve()
    steps = 0
    for step in range(1, 200):
        work = tmp_path / f"run{step}"
        work.mkdir()
        target = work / "idx"
        old = 0
        if start == "link":
            build(4).save(target)
            old = 4
        elif start == "plain folder":  # the layout of earlier releases: the index itself
            target.mkdir()
            for f in source.rglob("*"):
                if f.is_file():
                    dest = target / f.relative_to(source)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(f.read_bytes())
            old = 4
        else:
            target.mkdir()
        run = subprocess.run(
            [sys.executable, str(script), str(target), str(step)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode in (0, 9), run.stderr
        if old or run.returncode == 0:
            assert len(HybridIndex.load(target)) in ({old, 7} if old else {7})
        if run.returncode == 0:
            assert len(HybridIndex.load(target)) == 7
            break
        steps += 1
        build(5).save(target)  # the next save cleans up whatever the crash left
        assert len(HybridIndex.load(target)) == 5
        assert beside(work) == ["idx"]
    assert steps >= 4, "the save never reached its filesystem steps"


def test_load_restores_an_index_a_crash_left_aside(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    build(4).save(target)
    version = target.resolve()
    target.unlink()  # as if killed between moving the old index aside and linking the new one
    assert len(HybridIndex.load(target)) == 4
    assert target.resolve() == version


def test_no_temporaries_and_one_version_after_replacing(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    for n in (3, 4, 5):
        build(n).save(target)
    (tmp_path / ".idx.tmp-0123456789ab").mkdir()  # left by a crashed writer of an earlier release
    build(6).save(target)
    assert beside(tmp_path) == ["idx"]
    assert len(HybridIndex.load(target)) == 6
