"""Prepared documents as bytes, and a folder index built from parts.

A distributed build (:mod:`.ray_engine`) prepares documents in workers
(:func:`~ragzip.retrievers.building.prepare_documents`) and sends each work item back as
:func:`dumps` bytes. Into the folder index, each item is saved as one shard file in a staging
folder beside the index (written whole, then renamed: a shard is there complete or not at all);
when every item's shard is there they are merged into one index, published atomically as
``ragzip index`` publishes, and the staging folder is removed. A build that crashed leaves its
shards, so running it again prepares only the items that have none.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragzip.cache.feature_cache import KEY_BYTES, FeatureTable
from ragzip.core.errors import IndexCorruptedError
from ragzip.core.types import Passage
from ragzip.retrievers.building import Prepared

SUFFIX = ".npz"


def dumps(prepared: Prepared) -> bytes:
    """``prepared`` as the bytes of one ``.npz`` file (no pickles)."""
    chunks = [
        {"text": c.text, "id": c.id, "title": c.title, "metadata": dict(c.metadata)}
        for c in prepared.chunks
    ]
    features = prepared.features
    arrays: dict[str, np.ndarray] = {
        "chunks": np.frombuffer(json.dumps(chunks, ensure_ascii=False).encode(), np.uint8),
        "vectors": np.asarray(prepared.vectors, np.float32),
        "model": np.frombuffer((features.model if features else "").encode(), np.uint8),
        "feature_keys": features.keys if features else np.zeros((0, KEY_BYTES), np.uint8),
        "feature_vectors": np.asarray(features.vectors if features else np.zeros((0, 0))),
        "unit_counts": np.array([len(k) for k in prepared.unit_keys], np.int64),
        "unit_keys": np.frombuffer(b"".join(k for ks in prepared.unit_keys for k in ks), np.uint8),
    }
    out = io.BytesIO()
    np.savez(out, allow_pickle=False, **arrays)
    return out.getvalue()


def loads(data: bytes) -> Prepared:
    """The :class:`Prepared` :func:`dumps` wrote.

    Raises:
        IndexCorruptedError: ``data`` is not such bytes.
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            chunks = tuple(Passage(**c) for c in json.loads(z["chunks"].tobytes()))
            model = z["model"].tobytes().decode()
            features = (
                FeatureTable(model, z["feature_keys"], z["feature_vectors"]) if model else None
            )
            flat = z["unit_keys"].tobytes()
            counts = [int(n) for n in z["unit_counts"]]
            vectors = np.array(z["vectors"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = f"not a prepared shard: {exc}"
        raise IndexCorruptedError(msg) from exc
    keys, at = [], 0
    for n in counts:
        keys.append(
            tuple(flat[i : i + KEY_BYTES] for i in range(at, at + n * KEY_BYTES, KEY_BYTES))
        )
        at += n * KEY_BYTES
    return Prepared(chunks, vectors, features, tuple(keys))


def merge(parts: Sequence[Prepared]) -> Prepared:
    """One :class:`Prepared` of ``parts`` (at least one) in order, each unit vector kept once."""
    chunks = tuple(c for p in parts for c in p.chunks)
    vectors = np.concatenate([p.vectors for p in parts])
    tables = [p.features for p in parts if p.features is not None and len(p.features)]
    features = None
    if tables:
        keys = np.concatenate([t.keys for t in tables])
        _, first = np.unique(keys, axis=0, return_index=True)
        first.sort()
        rows = np.concatenate([t.vectors for t in tables])
        features = FeatureTable(tables[0].model, keys[first], rows[first])
    unit_keys = tuple(k for p in parts for k in p.unit_keys)
    return Prepared(chunks, vectors, features, unit_keys)


def staging_folder(index_path: Path) -> Path:
    """Where a folder index's shards wait until it is published: a hidden folder beside it."""
    return index_path.parent / f".{index_path.name}.parts"


def saved(folder: Path) -> set[str]:
    """The keys of the shards in ``folder`` (none when it does not exist)."""
    if not folder.is_dir():
        return set()
    return {p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}")}


def save(folder: Path, key: str, data: bytes) -> None:
    """Write one shard: to a temporary name first, then renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{key}.{os.getpid()}.tmp"
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, folder / f"{key}{SUFFIX}")


def load(folder: Path, keys: Sequence[str]) -> list[Prepared]:
    """The shards ``keys``, in that order.

    Raises:
        IndexCorruptedError: A shard is unreadable (delete the staging folder and rebuild).
    """
    return [loads((folder / f"{key}{SUFFIX}").read_bytes()) for key in keys]


def discard(folder: Path) -> None:
    """Remove the staging folder (after the index was published)."""
    shutil.rmtree(folder, ignore_errors=True)
