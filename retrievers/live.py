"""A folder index that follows re-indexing: :class:`LiveIndex`.

``ragzip index`` publishes every new version of a folder index by swapping a link onto the
index path (:mod:`ragzip.retrievers.store`) and then deletes the old version. A process that
loaded the index once keeps answering from the old version; :class:`LiveIndex` notices the new
one when :meth:`LiveIndex.refresh` is called (the proxy calls it every ``index_watch_interval``
seconds, on ``SIGHUP`` and on ``POST /admin/reload``), loads it completely beside the one in use,
and then swaps one reference: a search in flight finishes on the version it started with, the
next one uses the new version, and no search ever sees a half-loaded index. A version that fails
to load (deleted again by a faster re-index, or corrupted) leaves the old one in use and is
reported; the next refresh tries again.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragzip.cache.feature_cache import FeatureCache
from ragzip.core.errors import RagzipError
from ragzip.core.types import Passage
from ragzip.retrievers.folder import MANIFEST
from ragzip.retrievers.index import HybridIndex

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refresh:
    """What one :meth:`LiveIndex.refresh` did.

    Attributes:
        reloaded: Whether another version is now in use.
        version: The version in use (its folder and manifest stamp).
        chunks: Chunks in the version in use.
        error: Why the newer version found was not loaded (``None`` when nothing failed).
    """

    reloaded: bool
    version: str
    chunks: int
    error: str | None = None


def version_of(path: Path) -> str:
    """The identity of the index version ``path`` names now: the folder it resolves to and its
    manifest's modification time and size (changes with every publish, also one written in
    place).

    Raises:
        OSError: Nothing readable at ``path``.
    """
    folder = path.resolve(strict=True)
    stamp = os.stat(folder / MANIFEST)
    return f"{folder.name}@{stamp.st_mtime_ns}:{stamp.st_size}"


class LiveIndex:
    """The :class:`HybridIndex` at ``path``, replaced by each newly published version on
    :meth:`refresh` (a :class:`~ragzip.retrievers.base.Retriever`).

    Args:
        path: The index path (as ``ragzip index --out`` names it).
        embedder: The query embedder; the embedded MiniLM when ``None``. Kept across versions.
        verify: Check every file's SHA-256 on each load.

    Raises:
        IndexNotFoundError, IndexFormatError, IndexCorruptedError: As :meth:`HybridIndex.load`.
    """

    def __init__(self, path: str | os.PathLike[str], *, embedder: Any = None, verify: bool = True):
        self.path = Path(path)
        self._verify = verify
        self._lock = threading.Lock()  # one load at a time
        self._cache: FeatureCache | None = None
        self._index = HybridIndex.load(self.path, embedder, verify=verify)
        self._version = self._stamp()

    def _stamp(self) -> str:
        try:
            return version_of(self.path)
        except OSError:
            return ""

    @property
    def index(self) -> HybridIndex:
        """The version in use."""
        return self._index

    @property
    def version(self) -> str:
        """The identity of the version in use (see :func:`version_of`)."""
        return self._version

    def __len__(self) -> int:
        return len(self._index)

    def retrieve(self, query: str, k: int = 10) -> list[Passage]:
        """:meth:`HybridIndex.retrieve` on the version in use."""
        return self._index.retrieve(query, k)

    def share_features(self, cache: FeatureCache) -> None:
        """As :meth:`HybridIndex.share_features`; each new version's features replace the old
        version's in ``cache``."""
        self._cache = cache
        self._index.share_features(cache)

    def refresh(self, *, force: bool = False) -> Refresh:
        """Load the version the path names now if it is not the one in use (or ``force``)."""
        with self._lock:
            try:
                version = version_of(self.path)
            except OSError as exc:
                return self._kept(f"no index version readable at {self.path}: {exc}")
            if version == self._version and not force:
                return Refresh(False, self._version, len(self._index))
            old = self._index
            try:
                # the version folder itself: a swap during the load cannot mix two versions
                new = HybridIndex.load(
                    self.path.resolve(strict=True), old.embedder, verify=self._verify
                )
            except (RagzipError, OSError) as exc:
                return self._kept(f"cannot load the index version {version}: {exc}")
            if self._cache is not None:
                new.share_features(self._cache)
            self._index, self._version = new, version
            if self._cache is not None and old.features is not None:
                self._cache.detach(old.features)
        logger.info("index %s: now serving %s (%d chunks)", self.path, version, len(new))
        return Refresh(True, version, len(new))

    def _kept(self, error: str) -> Refresh:
        logger.warning("%s; still serving %s", error, self._version)
        return Refresh(False, self._version, len(self._index), error)
