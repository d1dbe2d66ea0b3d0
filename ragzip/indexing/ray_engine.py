"""Building an index on Ray (``ragzip index --engine ray``, extra ``ragzip[ray]``).

The driver reads the documents and splits the work into items of a few documents each, keyed by
the documents' ids and fingerprints (content and settings). A Ray Data pipeline maps the items
through a pool of actors, one per worker, each holding the embedder: it chunks the documents,
embeds the chunks and their sentences (:func:`~ragzip.retrievers.building.prepare_documents`)
and hands back bytes (:func:`.shards.dumps`). The driver writes each item as it arrives:

- into Postgres, in one transaction per item (``COPY``, replacing the documents' chunks by
  document id, :meth:`~ragzip.retrievers.postgres.PostgresIndex.write`); documents stored with
  the same fingerprint are skipped before any work is sent out;
- into the folder index, as one shard file per item (:mod:`.shards`); the shards are merged and
  the index published atomically when all are there.

So a build killed anywhere (driver or worker) and run again completes the index with no chunk
twice and none lost, preparing only the items that were not written. A worker that dies is
restarted by Ray and its item retried in the same run. ``address=None`` starts Ray on this
machine (one worker per core); an address joins a running cluster, whose nodes need ragzip
installed with the same version.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragzip.core.errors import ConfigError, IndexStoreError, InputError, MissingDependencyError
from ragzip.core.types import Passage
from ragzip.encoders.embedding import Precision, resolve_precision
from ragzip.indexing import shards
from ragzip.retrievers.backends import Written, fingerprint, mig_featurizer, write_postgres
from ragzip.retrievers.building import Prepared, ProgressFn, prepare_documents, unique_documents
from ragzip.retrievers.chunking import ChunkConfig
from ragzip.retrievers.dense import DenseConfig, embed_texts

logger = logging.getLogger(__name__)

DOCS_PER_ITEM = 16
"""Documents per work item: the unit a worker prepares (and a folder index's shard)."""
DOCS_PER_WRITE = 128
"""Documents gathered from finished items into one Postgres transaction."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray build runs.

    Attributes:
        address: A running cluster's address (``ray://host:10001`` or ``host:6379``); ``None``
            starts Ray on this machine.
        workers: Actors preparing documents, each with one CPU; ``None``: every CPU the
            cluster has.
        docs_per_item: Documents per work item.
        docs_per_write: Postgres: the most documents written in one transaction (finished
            items gathered; fewer, larger transactions cost the database less). A build killed
            loses at most these, prepared again when it runs again.
        log_level: What Ray itself logs when this build starts it (``ray.init``'s
            ``logging_level``).
    """

    address: str | None = None
    workers: int | None = None
    docs_per_item: int = DOCS_PER_ITEM
    docs_per_write: int = DOCS_PER_WRITE
    log_level: int = logging.WARNING

    def __post_init__(self) -> None:
        for name in ("workers", "docs_per_item", "docs_per_write"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                msg = f"{name} must be at least 1, got {value!r}"
                raise ConfigError(msg)


@dataclass(frozen=True)
class Item:
    """A few documents prepared and written together; ``key`` names what they hold."""

    key: str
    documents: tuple[Passage, ...]


def plan(
    documents: Sequence[Passage], fingerprints: Sequence[str], per_item: int, salt: str
) -> list[Item]:
    """``documents`` in items of ``per_item``, each keyed by its documents' ids and
    ``fingerprints`` (:func:`ragzip.retrievers.backends.fingerprint`) and ``salt`` (the settings
    that change the vectors): the same documents make the same keys in every run."""
    out = []
    for start in range(0, len(documents), per_item):
        docs = tuple(documents[start : start + per_item])
        prints = fingerprints[start : start + per_item]
        named = [salt, *(f"{d.id}\0{f}" for d, f in zip(docs, prints, strict=True))]
        key = hashlib.sha256("\n".join(named).encode()).hexdigest()[:32]
        out.append(Item(key, docs))
    return out


class Preparer:
    """The Ray Data actor: holds the embedder (and ``mig``'s featurizer) and prepares items."""

    def __init__(
        self, chunking: dict[str, Any] | None, features: bool, precision: Precision
    ) -> None:
        from ragzip.weights import load_embedder

        self.embedder = load_embedder()
        self.featurizer = mig_featurizer(self.embedder) if features else None
        self.chunking = ChunkConfig(**chunking) if chunking is not None else None
        self.config = DenseConfig(precision=precision)
        self.dim = int(embed_texts(self.embedder, ["size"]).shape[1])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        payloads = []
        for docs in batch["documents"]:
            passages = [Passage(**d) for d in json.loads(str(docs))]
            if any(p.text.strip() for p in passages):
                prepared = prepare_documents(
                    passages, self.chunking, self.embedder, self.config, featurizer=self.featurizer
                )
            else:  # documents with no text: no chunks (a Postgres write removes their old ones)
                prepared = Prepared((), np.zeros((0, self.dim), np.float32))
            payloads.append(shards.dumps(prepared))
        return {"key": batch["key"], "payload": np.array(payloads, dtype=object)}


def load_ray() -> Any:
    """The ``ray`` module with Ray Data imported.

    Raises:
        MissingDependencyError: Ray is not installed.
    """
    try:
        import ray
        import ray.data
    except ImportError as exc:
        msg = "the ray engine needs Ray Data: pip install 'ragzip[ray]'"
        raise MissingDependencyError(msg) from exc
    return ray


def run(
    items: Sequence[Item], init: dict[str, Any], options: RayOptions
) -> Iterator[tuple[Item, bytes]]:
    """Prepare ``items`` on Ray (``init``: :class:`Preparer`'s arguments); yields each item with
    its :func:`.shards.dumps` bytes, in the order they finish."""
    ray = load_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(
            address=options.address,
            num_cpus=options.workers if options.address is None else None,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=options.log_level,
        )
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        workers = options.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        try:
            rows = [
                {"key": item.key, "documents": json.dumps([_doc(d) for d in item.documents])}
                for item in items
            ]
        except (TypeError, ValueError) as exc:
            msg = f"document metadata must be JSON to travel to Ray workers: {exc}"
            raise InputError(msg) from exc
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            Preparer,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(workers, len(rows))),
            num_cpus=1,
            fn_constructor_kwargs=init,
        )
        by_key = {item.key: item for item in items}
        try:
            for row in dataset.iter_rows():
                yield by_key[str(row["key"])], bytes(row["payload"])
        except ray.exceptions.RayError as exc:
            msg = f"the build failed on Ray (what was written stays; run it again): {exc}"
            raise IndexStoreError(msg) from exc
    finally:
        if started:
            ray.shutdown()


def _doc(doc: Passage) -> dict[str, Any]:
    return {"text": doc.text, "id": doc.id, "title": doc.title, "metadata": dict(doc.metadata)}


def settings(chunking: ChunkConfig | None, features: bool) -> tuple[dict[str, Any], str]:
    """:class:`Preparer`'s arguments for a build, and the salt of its work items' keys (the
    precision is resolved here, once, so every worker embeds as the index records)."""
    init = {
        "chunking": chunking.to_dict() if chunking else None,
        "features": features,
        "precision": resolve_precision("auto"),
    }
    return init, json.dumps(init, sort_keys=True)


def write_index_ray(
    backend: str,
    documents: Sequence[Passage],
    *,
    index_path: Path = Path(),
    dsn: str | None = None,
    table: str = "ragzip",
    chunking: ChunkConfig | None,
    features: bool,
    options: RayOptions,
    progress: ProgressFn | None = None,
    prune: Sequence[Path] = (),
) -> Written:
    """:func:`ragzip.retrievers.backends.write_index` with the documents prepared on Ray (module
    docstring); the same index, built resumably by several workers.

    Raises:
        MissingDependencyError: Ray is not installed.
        ConfigError: Bad settings.
        InputError: Two documents with the same id, or none with any text.
    """
    documents = unique_documents(documents)
    if backend == "postgres":
        return _into_postgres(
            list(documents), dsn, table, chunking, features, options, progress, prune
        )
    if backend != "folder":
        msg = f"backend must be 'folder' or 'postgres', got {backend!r}"
        raise ConfigError(msg)
    return _into_folder(list(documents), index_path, chunking, features, options, progress)


def _into_folder(
    docs: list[Passage],
    index_path: Path,
    chunking: ChunkConfig | None,
    features: bool,
    options: RayOptions,
    progress: ProgressFn | None,
) -> Written:
    from ragzip.retrievers.index import HybridIndex

    if not any(d.text.strip() for d in docs):
        msg = f"nothing to index: the {len(docs)} passage(s) given have no text"
        raise InputError(msg)
    init, salt = settings(chunking, features)
    prints = [fingerprint(d, chunking, features) for d in docs]
    items = plan(docs, prints, options.docs_per_item, salt)
    staging = shards.staging_folder(index_path)
    have = shards.saved(staging)
    todo = [item for item in items if item.key not in have]
    done = sum(len(item.documents) for item in items if item.key in have)
    if todo:
        logger.info("preparing %d of %d work items on Ray", len(todo), len(items))
        for item, payload in run(todo, init, options):
            shards.save(staging, item.key, payload)
            done += len(item.documents)
            if progress:
                progress("embed", done, len(docs))
    if progress:
        progress("bm25", 0, 1)
    merged = shards.merge(shards.load(staging, [item.key for item in items]))
    config = DenseConfig(precision=init["precision"])
    built = HybridIndex.from_embeddings(
        merged.chunks, merged.vectors, progress=False, dense_config=config, chunk_config=chunking
    )
    built.features = merged.features
    built.save(index_path)
    shards.discard(staging)
    if progress:
        progress("faiss", 1, 1)
    return Written(str(index_path), len(docs), len(built))


def _into_postgres(
    docs: list[Passage],
    dsn: str | None,
    table: str,
    chunking: ChunkConfig | None,
    features: bool,
    options: RayOptions,
    progress: ProgressFn | None,
    prune: Sequence[Path],
) -> Written:
    init, salt = settings(chunking, features)

    def write_changed(index: Any, changed: list[Passage]) -> int:
        chunks = done = 0
        prints = [str(d.metadata["indexed_as"]) for d in changed]
        items = plan(changed, prints, options.docs_per_item, salt)
        ids: list[str] = []
        parts: list[Prepared] = []
        # at most an eighth of the build in one transaction: a kill loses little of a small one
        per_write = min(options.docs_per_write, max(options.docs_per_item, len(changed) // 8))

        def flush() -> int:
            written = index.write(ids, shards.merge(parts)) if parts else 0
            ids.clear()
            parts.clear()
            return int(written)

        for item, payload in run(items, init, options):
            ids.extend(d.id for d in item.documents)
            parts.append(shards.loads(payload))
            if len(ids) >= per_write:
                chunks += flush()
            done += len(item.documents)
            if progress:
                progress("embed", done, len(changed))
        chunks += flush()
        if chunks:
            index.vacuum()
        return int(chunks)

    return write_postgres(
        docs,
        dsn=dsn,
        table=table,
        chunking=chunking,
        features=features,
        prune=prune,
        write_changed=write_changed,
    )
