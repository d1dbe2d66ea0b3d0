"""The index folder on disk: its manifest, the checksummed file table and the chunk records.

On-disk format (version 2), a directory holding::

    manifest.json   {"format": "ragzip-index", "version": 2, "embedder": {"name", "dim"},
                     "n_chunks", "chunking", "bm25", "dense", "features",
                     "files": {path: {"sha256", "size"}}}
    chunks.jsonl    one {"id", "title", "text", "metadata"} per chunk, in index order
    bm25/           the bm25s index (``bm25s.BM25.save``)
    dense.faiss     the faiss index (``faiss.write_index``); vectors are stored, never recomputed
    features/       optional: vectors of the chunks' sentences computed at index time
                    (:class:`~ragzip.cache.feature_cache.FeatureTable`: ``keys.npy`` content
                    addresses, ``vectors.npy`` float16 rows); ``"features"`` in the manifest
                    names their model namespace and count, or is ``null``

Version 1 (no ``features`` entry) is refused with a message to rebuild: its parts are readable,
but an index rebuilt once gets the precomputed features that make compression cheap.

:meth:`HybridIndex.save` writes a complete new version folder beside the index path, fsyncs it
and swaps a link to it onto the path in one atomic rename (:mod:`ragzip.retrievers.store`): at
every instant the path names the old index or the new one, never a mix or nothing; a crash at
any step is recovered on the next load or save, and stale temporaries are removed. Only an
empty directory or an existing ragzip index is ever replaced.

:meth:`HybridIndex.load` checks, in order: the directory exists (:class:`IndexNotFoundError`);
its manifest is a ragzip manifest of version 2 (:class:`IndexFormatError`); every listed file is
present with its recorded size — always — and its SHA-256 when ``verify=True`` (the default;
hashing runs at roughly 1 GB/s, a fraction of a second for a 100k-chunk index); and the parts
agree on the number of chunks (:class:`IndexCorruptedError` otherwise). ``verify=False`` keeps
the size checks only, for very large indexes whose files are trusted.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ragzip.cache.feature_cache import FeatureTable
from ragzip.core.artefacts import sha256_file
from ragzip.core.errors import (
    IndexCorruptedError,
    IndexFormatError,
    IndexNotFoundError,
    InputError,
    MissingDependencyError,
)
from ragzip.core.jsonl import json_object_or_none, read_json_object
from ragzip.core.types import Passage
from ragzip.retrievers import store
from ragzip.retrievers.bm25 import BM25Config, BM25Index
from ragzip.retrievers.chunking import ChunkConfig
from ragzip.retrievers.dense import DenseConfig, DenseIndex

FORMAT = "ragzip-index"
VERSION = 2
MANIFEST = "manifest.json"
CHUNKS = "chunks.jsonl"
BM25_DIR = "bm25"
FAISS_FILE = "dense.faiss"
FEATURES_DIR = "features"


def write_chunks(path: Path, chunks: Iterable[Passage]) -> None:
    """One JSON record per chunk, in index order.

    Raises:
        InputError: Chunk metadata that JSON cannot hold.
    """
    with path.open("w", encoding="utf-8") as fh:
        for chunk in chunks:
            record = {
                "id": chunk.id,
                "title": chunk.title,
                "text": chunk.text,
                "metadata": dict(chunk.metadata),
            }
            try:
                line = json.dumps(record, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                msg = f"chunk {chunk.id!r} has metadata JSON cannot hold: {exc}"
                raise InputError(msg) from exc
            fh.write(line + "\n")


def write_manifest(folder: Path, fields: Mapping[str, Any]) -> None:
    """Fsync every file of ``folder``, then write the manifest: format, version, ``fields`` and
    the table of every file's size and SHA-256."""
    files = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        store.fsync_file(file)
        rel = file.relative_to(folder).as_posix()
        files[rel] = {"sha256": sha256_file(file, cache=False), "size": file.stat().st_size}
    manifest = {"format": FORMAT, "version": VERSION, **fields, "files": files}
    manifest_path = folder / MANIFEST
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    store.fsync_file(manifest_path)
    for sub in sorted(p for p in folder.rglob("*") if p.is_dir()):
        store.fsync_dir(sub)
    store.fsync_dir(folder)


def is_index(path: Path) -> bool:
    manifest = json_object_or_none(path / MANIFEST)
    return manifest is not None and manifest.get("format") == FORMAT


def replaceable(path: Path) -> bool:
    if path.is_dir():
        return not any(path.iterdir()) or is_index(path)
    return False


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        msg = f"{str(folder)!r} is not a ragzip index: it has no {MANIFEST}"
        raise IndexFormatError(msg)
    manifest = read_json_object(path, "the JSON manifest", IndexFormatError)
    if manifest.get("format") != FORMAT:
        found = manifest.get("format")
        msg = f"{str(folder)!r} is not a ragzip index (manifest format {found!r}, not {FORMAT!r})"
        raise IndexFormatError(msg)
    if manifest.get("version") != VERSION:
        msg = (
            f"{str(folder)!r} is a ragzip index of format version {manifest.get('version')!r}; "
            f"this ragzip reads version {VERSION} (rebuild the index with `ragzip index`; "
            "version 2 stores precomputed compression features)"
        )
        raise IndexFormatError(msg)
    files = manifest.get("files")
    if not isinstance(files, dict):
        msg = f"{path}: malformed manifest (no 'files' table)"
        raise IndexFormatError(msg)
    return manifest


def check_files(folder: Path, files: Mapping[str, Any], *, verify: bool) -> None:
    required = {CHUNKS, FAISS_FILE}
    missing_entries = required - set(files)
    if missing_entries or not any(name.startswith(f"{BM25_DIR}/") for name in files):
        msg = f"{folder / MANIFEST} does not list the index's files"
        raise IndexCorruptedError(msg)
    for name, entry in files.items():
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts:
            msg = f"{folder / MANIFEST} lists a file outside the index: {name!r}"
            raise IndexFormatError(msg)
        file = folder / rel
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            msg = f"index file missing: {file}"
            raise IndexCorruptedError(msg) from None
        if not isinstance(entry, dict):
            msg = f"{folder / MANIFEST}: malformed entry for {name!r}"
            raise IndexFormatError(msg)
        if size != entry.get("size"):
            msg = f"index file {file} has {size} bytes, the manifest says {entry.get('size')}"
            raise IndexCorruptedError(msg)
        if verify and sha256_file(file, cache=False) != entry.get("sha256"):
            msg = f"index file {file} does not match its SHA-256 checksum (corrupted)"
            raise IndexCorruptedError(msg)


def read_chunks(path: Path) -> list[Passage]:
    chunks = []
    number = 0
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):  # noqa: B007 - used in the error
                record = json.loads(line)
                chunks.append(
                    Passage(
                        text=record["text"],
                        id=record["id"],
                        title=record["title"],
                        metadata=record["metadata"],
                    )
                )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = f"cannot read chunk record {path}:{number}: {exc!r}"
        raise IndexCorruptedError(msg) from exc
    return chunks


def folder_stats(path: Path) -> dict[str, Any]:
    """Documents, chunks, stored sentence vectors, bytes and embedder of the index at ``path``.

    Raises:
        IndexNotFoundError: Nothing at ``path``.
        IndexFormatError, IndexCorruptedError: Not a readable ragzip index.
    """
    if not path.exists():
        msg = f"no index at {str(path)!r}"
        raise IndexNotFoundError(msg)
    folder = path.resolve()
    manifest = read_manifest(folder)
    chunks = read_chunks(folder / CHUNKS)
    features = manifest.get("features") or {}
    try:
        return {
            "index": str(path),
            "version": folder.name,
            "embedder": str(manifest["embedder"]["name"]),
            "dim": int(manifest["embedder"]["dim"]),
            "documents": len({str(c.metadata.get("doc_id", c.id)) for c in chunks}),
            "chunks": len(chunks),
            "sentence_vectors": int(features.get("n", 0)),
            "bytes": sum(int(entry["size"]) for entry in manifest["files"].values()),
        }
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"{folder / MANIFEST}: malformed manifest ({exc!r})"
        raise IndexFormatError(msg) from exc


@dataclass(frozen=True)
class StoredIndex:
    """The parts of an index as the folder holds them."""

    chunks: Sequence[Passage]
    bm25: BM25Index
    dense: DenseIndex
    embedder_name: str
    dim: int
    chunk_config: ChunkConfig | None
    features: FeatureTable | None = None


def write_index(folder: Path, index: StoredIndex) -> None:
    """Write every part of ``index`` into the empty ``folder``, then its manifest."""
    write_chunks(folder / CHUNKS, index.chunks)
    (folder / BM25_DIR).mkdir()
    index.bm25.save(folder / BM25_DIR)
    index.dense.save(folder / FAISS_FILE)
    features = None
    if index.features is not None:
        (folder / FEATURES_DIR).mkdir()
        index.features.save(folder / FEATURES_DIR)
        features = {
            "model": index.features.model,
            "n": len(index.features),
            "dim": int(index.features.vectors.shape[1]),
            "dtype": str(index.features.vectors.dtype),
        }
    fields = {
        "embedder": {"name": index.embedder_name, "dim": index.dim},
        "n_chunks": len(index.chunks),
        "chunking": index.chunk_config.to_dict() if index.chunk_config else None,
        "bm25": index.bm25.config.to_dict(),
        "dense": {**index.dense.config.to_dict(), "index": index.dense.kind},
        "features": features,
    }
    write_manifest(folder, fields)


def read_index(folder: Path, *, verify: bool) -> StoredIndex:
    """Read and check every part of the index in ``folder`` (see the module docstring).

    Raises:
        IndexFormatError: Not a ragzip index, another format version, a malformed manifest.
        IndexCorruptedError: A file missing, of the wrong size or checksum, or parts that
            disagree.
    """
    manifest = read_manifest(folder)
    check_files(folder, manifest["files"], verify=verify)
    try:
        chunk_config = ChunkConfig.from_dict(manifest["chunking"]) if manifest["chunking"] else None
        bm25_config = BM25Config(**manifest["bm25"])
        dense_fields = {f.name for f in dataclasses.fields(DenseConfig)}
        dense_config = DenseConfig(
            **{k: v for k, v in manifest["dense"].items() if k in dense_fields}
        )
        name = str(manifest["embedder"]["name"])
        dim = int(manifest["embedder"]["dim"])
        n_chunks = int(manifest["n_chunks"])
        features_entry = manifest["features"]
        features_model = str(features_entry["model"]) if features_entry else None
        features_n = int(features_entry["n"]) if features_entry else 0
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"{folder / MANIFEST}: malformed manifest ({exc!r})"
        raise IndexFormatError(msg) from exc
    chunks = read_chunks(folder / CHUNKS)
    try:
        bm25 = BM25Index.load(folder / BM25_DIR, bm25_config)
    except MissingDependencyError:
        raise
    except Exception as exc:
        msg = f"cannot read the BM25 index in {folder / BM25_DIR}: {exc}"
        raise IndexCorruptedError(msg) from exc
    try:
        dense = DenseIndex.load(folder / FAISS_FILE, dense_config)
    except Exception as exc:
        msg = f"cannot read the faiss index {folder / FAISS_FILE}: {exc}"
        raise IndexCorruptedError(msg) from exc
    if not (len(chunks) == len(bm25) == len(dense) == n_chunks) or dense.dim != dim:
        msg = (
            f"index parts disagree in {str(folder)!r}: manifest says {n_chunks} chunks of "
            f"dimension {dim}; found {len(chunks)} chunks, {len(bm25)} BM25 documents, "
            f"{len(dense)} vectors of dimension {dense.dim}"
        )
        raise IndexCorruptedError(msg)
    features = None
    if features_model is not None:
        features = FeatureTable.load(folder / FEATURES_DIR, features_model)
        if len(features) != features_n:
            msg = f"{folder / FEATURES_DIR} holds {len(features)} vectors, not {features_n}"
            raise IndexCorruptedError(msg)
    return StoredIndex(chunks, bm25, dense, name, dim, chunk_config, features)


def save_index(target: Path, index: StoredIndex) -> Path:
    """Publish ``index`` at ``target`` atomically (:func:`store.publish`); returns ``target``.

    Raises:
        IndexFormatError: ``target`` exists and is neither an empty directory nor a ragzip
            index (it is never overwritten then).
        InputError: Chunk metadata that JSON cannot hold.
    """
    if target.exists() and not replaceable(target):
        msg = (
            f"refusing to replace {str(target)!r}: it is not a ragzip index "
            "(remove it or choose another path)"
        )
        raise IndexFormatError(msg)
    store.publish(target, lambda folder: write_index(folder, index), is_complete=is_index)
    return target


def open_index(folder: Path, *, verify: bool) -> StoredIndex:
    """The index at ``folder`` (recovering one a crash left half-published).

    Raises:
        IndexNotFoundError: No directory at ``folder``.
        IndexFormatError: A file, not a ragzip index, or another format version.
        IndexCorruptedError: A file is missing, has the wrong size or checksum, or the parts
            disagree.
    """
    if not folder.exists() and not store.recover(folder, is_index):
        msg = f"no index at {str(folder)!r}"
        raise IndexNotFoundError(msg)
    if not folder.is_dir():
        msg = f"{str(folder)!r} is a file, not an index directory"
        raise IndexFormatError(msg)
    return read_index(folder, verify=verify)
