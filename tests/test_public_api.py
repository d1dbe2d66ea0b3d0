"""The public API is what ``__all__`` says, and every name in it exists."""

from __future__ import annotations

import ragzip


def test_all_names_exist() -> None:
    for name in ragzip.__all__:
        assert hasattr(ragzip, name), name


def test_all_is_unique() -> None:
    assert len(set(ragzip.__all__)) == len(ragzip.__all__)


def test_public_names_are_exported() -> None:
    public = {
        n
        for n, v in vars(ragzip).items()
        if not n.startswith("_")
        and not getattr(v, "__name__", "").startswith("ragzip.")
        and getattr(v, "__module__", "").startswith("ragzip")
    }
    assert public <= set(ragzip.__all__)
