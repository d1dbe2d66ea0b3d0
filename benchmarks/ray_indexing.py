"""Indexing throughput: the local engine against Ray with 1 and 2 workers, into the folder index
and into Postgres, on the same documents (NQ passages), and what a 10M-chunk corpus costs.

Every build is timed from the call to its return: chunking, embedding every chunk and every
sentence (``mig``'s stored vectors), writing, and for the folder index the merge, BM25 and faiss
builds and the atomic publish. Ray runs on this machine, started once before the Ray builds
(its start is reported apart); each build starts its own actor pool, whose model loading is
counted. The local engine runs with one torch thread, as each Ray worker does (Ray sets one
thread per CPU it gives an actor; measured below in a Ray task).

    python benchmarks/ray_indexing.py --docs 2000

Writes ``benchmarks/results/ray_indexing.json`` and ``.md``. Needs ``../shared/data``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from results_io import machine, write
from retrieval_corpus import DEFAULT_DATA, load_nq, nq_docs
from timing import log

from ragzip.core.types import Passage
from ragzip.indexing.ray_engine import RayOptions, write_index_ray
from ragzip.retrievers.backends import write_index
from ragzip.retrievers.chunking import ChunkConfig
from ragzip.retrievers.postgres import embedded_dsn, release_embedded

CORPUS_CHUNKS = 10_000_000
KEY = "steady_chunks_per_s"


def _documents(data_dir: Path, n: int) -> list[Passage]:
    rows, seen = [], set()
    for row in load_nq(data_dir):
        if row["text"] not in seen:
            seen.add(row["text"])
            rows.append(row)
    return nq_docs(rows[:n])


def _build(
    engine: str, backend: str, docs: list[Passage], workers: int, where: Path, dsn: str
) -> dict[str, Any]:
    table = f"{engine}{workers}"
    common: dict[str, Any] = {"chunking": ChunkConfig(), "features": True}
    target = {"index_path": where / table, "dsn": dsn, "table": table}
    marks: list[tuple[float, int]] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "embed":
            marks.append((time.perf_counter(), done))

    t0 = time.perf_counter()
    if engine == "local":
        written = write_index(backend, docs, **target, **common)  # type: ignore[arg-type]
    else:
        options = RayOptions(workers=workers)
        written = write_index_ray(
            backend, docs, options=options, progress=progress, **target, **common
        )
    seconds = time.perf_counter() - t0
    row = {
        "engine": engine,
        "backend": backend,
        "workers": workers,
        "documents": written.documents,
        "chunks": written.chunks,
        "seconds": round(seconds, 2),
        "chunks_per_s": round(written.chunks / seconds, 1),
    }
    if len(marks) >= 2:  # Ray: from the first finished item to the last, the pool warm
        (t_first, d_first), (t_last, d_last) = marks[0], marks[-1]
        per_doc = written.chunks / max(1, written.documents)
        row["first_item_s"] = round(t_first - t0, 2)
        row["steady_chunks_per_s"] = round((d_last - d_first) * per_doc / (t_last - t_first), 1)
    log(f"{row}")
    return row


def _ray_threads() -> int:
    import ray

    @ray.remote(num_cpus=1)
    def threads() -> int:
        import torch as worker_torch

        return int(worker_torch.get_num_threads())

    return int(ray.get(threads.remote()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    import ray

    torch.set_num_threads(1)
    docs = _documents(args.data_dir, args.docs)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        dsn = embedded_dsn(where / "pg")
        try:
            for backend in ("folder", "postgres"):
                rows.append(_build("local", backend, docs, 1, where, dsn))
            t0 = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            start_s = time.perf_counter() - t0
            worker_threads = _ray_threads()
            for backend in ("folder", "postgres"):
                for workers in (1, 2):
                    rows.append(_build("ray", backend, docs, workers, where, dsn))
            ray.shutdown()
        finally:
            release_embedded(where / "pg")
    record = {
        "machine": machine(),
        "documents": len(docs),
        "docs_asked": args.docs,
        "ray_start_s": round(start_s, 2),
        "ray_worker_torch_threads": worker_threads,
        "local_torch_threads": torch.get_num_threads(),
        "builds": rows,
        "speedup_2_over_1": {
            b: round(_rate(rows, b, 2) / _rate(rows, b, 1), 2) for b in ("folder", "postgres")
        },
        "steady_speedup_2_over_1": {
            b: round(_rate(rows, b, 2, KEY) / _rate(rows, b, 1, KEY), 2)
            for b in ("folder", "postgres")
        },
    }
    write("ray_indexing", record, _markdown(record))


def _rate(
    rows: list[dict[str, Any]], backend: str, workers: int, key: str = "chunks_per_s"
) -> float:
    return next(
        float(r[key])
        for r in rows
        if r["engine"] == "ray" and r["backend"] == backend and r["workers"] == workers
    )


def _markdown(record: dict[str, Any]) -> str:
    m = record["machine"]
    lines = [
        "# Indexing throughput: local engine and Ray (1 and 2 workers)",
        "",
        f"{record['documents']} NQ passages, chunked (120 words), every chunk and sentence "
        f"embedded (MiniLM, `mig`'s stored vectors). CPU: {m['processor']}, {m['cpus']} cores; "
        f"one torch thread per worker (local: {record['local_torch_threads']}, Ray workers: "
        f"{record['ray_worker_torch_threads']}, read in a Ray task). Ray start on this machine: "
        f"{record['ray_start_s']} s (not in the builds' times). Command: "
        f"`python benchmarks/ray_indexing.py --docs {record['docs_asked']}` (distinct passages).",
        "",
        "chunks/s: chunks over the whole build; steady: from the first finished work item to "
        "the last (the actor pool started and its models loaded), what a long build runs at.",
        "",
        "| engine | backend | workers | chunks | seconds | chunks/s | first item (s) "
        "| steady chunks/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in record["builds"]:
        lines.append(
            f"| {r['engine']} | {r['backend']} | {r['workers']} | {r['chunks']} | "
            f"{r['seconds']} | {r['chunks_per_s']} | {r.get('first_item_s', '-')} | "
            f"{r.get(KEY, '-')} |"
        )
    speed, steady = record["speedup_2_over_1"], record["steady_speedup_2_over_1"]
    lines += [
        "",
        f"2 workers over 1, whole build: folder {speed['folder']}x, Postgres "
        f"{speed['postgres']}x; steady: folder {steady['folder']}x, Postgres "
        f"{steady['postgres']}x (the driver, Ray's own processes and, for Postgres, the "
        "database share the same 2 cores).",
        "",
        f"## {CORPUS_CHUNKS:,} chunks on N workers (arithmetic from the steady 1-worker rates)",
        "",
        "Assumes workers scale linearly (one core each, as measured to 2 here) and a writer "
        "that keeps up; hours = chunks / (rate x N).",
        "",
        "| workers | folder (h) | Postgres (h) |",
        "|---:|---:|---:|",
    ]
    for n in (1, 16, 64, 256):
        hours = [
            CORPUS_CHUNKS / (_rate(record["builds"], b, 1) * n) / 3600
            for b in ("folder", "postgres")
        ]
        lines.append(f"| {n} | {hours[0]:.1f} | {hours[1]:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
