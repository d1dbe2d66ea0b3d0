"""Soft context through an OpenAI-compatible server: vLLM-style ``prompt_embeds`` over real HTTP.

The fake server on loopback (see conftest.py) decodes the payload exactly as vLLM does
(base64 → ``torch.load(weights_only=True)``), checks the ``(seq, 576)`` shape and dtype, and keeps
the tensor for inspection.
"""

from __future__ import annotations

import pytest
import torch

from ragzip.core.errors import ConfigError, UpstreamError
from ragzip.core.types import Budget
from ragzip.generators import OpenAIGenerator
from ragzip.pipeline import Pipeline
from ragzip.prompts import SOFT_PLACEHOLDER, build_result_messages
from tests import soft_support as soft

from .conftest import MODEL_ID

QUERY, PASSAGES = soft.QUERY, soft.PASSAGES


def remote(server, **kwargs):  # type: ignore[no-untyped-def]
    gen = soft.tiny_generator()
    kwargs.setdefault("prompt_embeds", True)
    kwargs.setdefault("embedder", gen if kwargs["prompt_embeds"] else None)
    return OpenAIGenerator(
        server.url, MODEL_ID, counter=gen.counter, retry_backoff_s=0.01, timeout=5.0, **kwargs
    )


@pytest.fixture(scope="module")
def soft_result():  # type: ignore[no-untyped-def]
    gen = soft.tiny_generator()
    comp = soft.MeanEmbeddingCompressor(counter=gen.counter, table=soft.embedding_table(gen))
    return comp.compress(QUERY, PASSAGES, budget=Budget.tokens(2))


@pytest.mark.parametrize("streamed", [True, False])
def test_vectors_sit_at_the_placeholders_of_the_sent_prompt(
    fake_server, soft_result, streamed
) -> None:
    fake_server.behaviour.ignore_stream = not streamed
    gen = soft.tiny_generator()
    out = remote(fake_server).generate_compressed(soft_result, max_new_tokens=8)

    sent = fake_server.last_embeds
    ids = gen.prompt_ids(build_result_messages(soft_result))
    assert sent.dtype == torch.float32
    assert tuple(sent.shape) == (len(ids), soft.HIDDEN)
    positions = [i for i, t in enumerate(ids) if t == 16]
    assert len(positions) == 2
    assert torch.equal(sent[positions], torch.from_numpy(soft_result.embeddings))
    # Every other row is the embedding of the templated prompt's own token.
    others = [i for i in range(len(ids)) if i not in positions]
    table = soft.embedding_table(gen)
    assert torch.equal(sent[others], table[[ids[i] for i in others]])

    assert out.text == f"rows={len(ids)} sum={float(sent.sum()):.4f}"
    assert out.prompt_tokens == len(ids)
    assert out.finish_reason == "stop"
    assert 0 <= out.ttft_s <= out.total_s
    (request,) = fake_server.requests
    assert request["path"] == "/v1/completions"
    assert request["body"]["model"] == MODEL_ID
    assert request["body"]["max_tokens"] == 8
    assert "messages" not in request["body"] and "prompt" not in request["body"]


def test_pipeline_sends_token_embeddings_that_read_as_the_text(fake_server) -> None:
    gen = soft.tiny_generator()
    comp = soft.TokenEmbeddingCompressor(counter=gen.counter, table=soft.embedding_table(gen))
    pipe = Pipeline(comp, Budget.compression(1.0), generator=remote(fake_server))
    result = pipe.run(QUERY, PASSAGES[:1])
    sent = fake_server.last_embeds
    assert result.prompt_tokens == sent.shape[0]
    ids = gen.prompt_ids(build_result_messages(result.compression))
    passage = gen.tokenizer(PASSAGES[0], add_special_tokens=False)["input_ids"]
    for pos, token in zip([i for i, t in enumerate(ids) if t == 16], passage, strict=True):
        ids[pos] = token
    assert torch.equal(sent, soft.embedding_table(gen)[ids])


def test_server_without_prompt_embeds_is_a_clear_upstream_error(fake_server, soft_result) -> None:
    fake_server.behaviour.hidden = 2048  # the served model is another width
    with pytest.raises(UpstreamError, match="refused prompt embeddings") as info:
        remote(fake_server).generate_compressed(soft_result, max_new_tokens=4)
    assert info.value.status_code == 400
    assert "--enable-prompt-embeds" in str(info.value)
    assert "(seq, 2048)" in str(info.value)
    assert len(fake_server.requests) == 1  # a refusal is not retried

    fake_server.reset()
    fake_server.behaviour.fail_status = 404
    fake_server.behaviour.fail_times = 1
    with pytest.raises(UpstreamError, match=r"refused prompt embeddings.*HTTP 404"):
        remote(fake_server).generate_compressed(soft_result, max_new_tokens=4)


def test_soft_context_needs_the_declaration(fake_server, soft_result) -> None:
    gen = remote(fake_server, prompt_embeds=False)
    assert not gen.accepts_embeddings
    with pytest.raises(ConfigError, match="not declared to accept prompt embeddings"):
        gen.generate_compressed(soft_result, max_new_tokens=4)
    assert fake_server.requests == []
    with pytest.raises(ConfigError, match="only used with prompt_embeds=True"):
        OpenAIGenerator(fake_server.url, MODEL_ID, embedder=soft.tiny_generator())


def test_text_results_still_use_chat_completions(fake_server) -> None:
    from ragzip.registry import create_compressor

    gen = soft.tiny_generator()
    text = create_compressor("identity", counter=gen.counter).compress(
        QUERY, PASSAGES, budget=Budget.compression(1.0)
    )
    out = remote(fake_server).generate_compressed(text, max_new_tokens=64)
    assert fake_server.paths() == ["/v1/chat/completions"]
    assert out.text.startswith("echo: Question:")
    assert SOFT_PLACEHOLDER not in fake_server.requests[0]["body"]["messages"][1]["content"]


@pytest.mark.slow
def test_default_embedder_is_smollm2(fake_server, soft_result) -> None:
    gen = OpenAIGenerator(fake_server.url, MODEL_ID, prompt_embeds=True, retry_backoff_s=0.01)
    assert gen.embedder.hidden_size == soft.HIDDEN
    out = gen.generate_compressed(soft_result, max_new_tokens=4)
    assert out.prompt_tokens == fake_server.last_embeds.shape[0]
