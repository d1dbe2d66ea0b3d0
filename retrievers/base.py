"""The retriever interface: anything that turns a question into ranked passages."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ragzip.types import Passage


@runtime_checkable
class Retriever(Protocol):
    """Returns the ``k`` passages most relevant to a query, best first."""

    def retrieve(self, query: str, k: int = 10) -> list[Passage]:
        """The top ``k`` passages for ``query``, each with its retrieval ``score`` set."""
        ...
