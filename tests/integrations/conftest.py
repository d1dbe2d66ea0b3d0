"""Fixtures for the LangChain integration: a real index over the repository's docs, the real
generator tokenizer, and the embedded generator (loaded once per session)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Generator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: Any, name: str, obj: object) -> Generator[None, Any, None]:
    """Run coroutine tests of this folder (ours and langchain-tests' standard ones) on asyncio.

    Innermost wrapper: the marker is set before pytest-asyncio's wrapper looks for it.
    """
    outcome = yield
    if not inspect.iscoroutinefunction(obj):
        return
    result = outcome.get_result()
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, pytest.Function) and item.get_closest_marker("asyncio") is None:
            item.add_marker(pytest.mark.asyncio)


@cache
def docs_index() -> Any:
    """A hybrid index over ``docs/`` (chunked), built once per session."""
    from ragzip.retrievers import HybridIndex, load_documents

    return HybridIndex.build(load_documents([DOCS]), progress=False)


@cache
def embedded_generator() -> Any:
    """The embedded SmolLM2 generator, loaded once per session."""
    from ragzip.generators.embedded import EmbeddedGenerator

    return EmbeddedGenerator(device="cpu")


@pytest.fixture(scope="session")
def index() -> Any:
    return docs_index()


@pytest.fixture(scope="session")
def counter() -> Any:
    """The embedded generator's tokenizer (SmolLM2), in which budgets are counted."""
    from ragzip.weights import smollm2_counter

    return smollm2_counter()


@pytest.fixture(scope="session")
def generator() -> Any:
    return embedded_generator()


def snippets(page: str, language: str = "python") -> list[str]:
    """The ``language`` code blocks of ``docs/integrations/<page>.md``, in order."""
    text = (DOCS / "integrations" / f"{page}.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)
