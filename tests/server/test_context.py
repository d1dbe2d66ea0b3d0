"""Context marking: what counts as context, what passes verbatim, how kept text goes back."""

from __future__ import annotations

import pytest

from ragzip.core.errors import InputError
from ragzip.core.types import Passage
from ragzip.server.context import (
    plan_chat,
    plan_completion,
    render_chat,
    render_completion,
    split_passages,
)

TAGGED = (
    "Answer from the documents.\n"
    "<ragzip:context>\nAlpha one. Alpha two.\n\n  Beta one.\n\n\nGamma one.\n</ragzip:context>\n"
    "Question: who wrote Alpha?"
)


def test_blank_lines_split_passages() -> None:
    passages = split_passages("\nA a.\n\nB b.\n \t\nC c.\n")
    assert [p.text for p in passages] == ["A a.", "B b.", "C c."]


def test_passage_tags_keep_blank_lines_and_attributes() -> None:
    inner = (
        'Loose text.\n\n<ragzip:passage title="Doc 1" id="d1">Para one.\n\nPara two.'
        "</ragzip:passage>\n<ragzip:passage>Second.</ragzip:passage>\n\nTrailing."
    )
    passages = split_passages(inner)
    assert [p.text for p in passages] == [
        "Loose text.",
        "Para one.\n\nPara two.",
        "Second.",
        "Trailing.",
    ]
    assert passages[1].title == "Doc 1" and passages[1].id == "d1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<ragzip:context>never closed", "never closed"),
        ("a </ragzip:context> b", "without a matching"),
        ("<ragzip:context><ragzip:context>x</ragzip:context></ragzip:context>", "nested"),
        ("<ragzip:passage>outside</ragzip:passage>", "belong inside"),
        ("<ragzip:context><ragzip:passage>no end</ragzip:context>", "malformed"),
        (
            '<ragzip:context><ragzip:passage lang="en">x</ragzip:passage></ragzip:context>',
            "unknown <ragzip:passage> attributes",
        ),
    ],
)
def test_malformed_markup_is_an_input_error(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        plan_chat([{"role": "user", "content": text}], [])


def test_chat_tags_query_and_verbatim_rest() -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": TAGGED, "name": "u1"},
    ]
    plan = plan_chat(messages, [])
    assert [p.text for p in plan.passages] == ["Alpha one. Alpha two.", "Beta one.", "Gamma one."]
    assert plan.default_query == "Answer from the documents.\n\nQuestion: who wrote Alpha?"
    out = render_chat(
        messages, plan, ["Alpha one.", "", "Gamma one."], placement="system", header="Context:"
    )
    assert out[0] is messages[0]  # untouched messages are passed as they came
    assert out[1]["name"] == "u1"
    assert out[1]["content"] == (
        "Answer from the documents.\nAlpha one.\n\nGamma one.\nQuestion: who wrote Alpha?"
    )
    assert messages[1]["content"] == TAGGED  # the request itself is not modified


def test_field_passages_inserted_before_last_user_message() -> None:
    messages = [
        {"role": "system", "content": "Sys."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    field = [Passage(text="P one.", title="T1"), Passage(text="P two.")]
    plan = plan_chat(messages, field)
    assert plan.default_query == "second question"
    out = render_chat(messages, plan, ["P one.", "P two."], placement="system", header="Context:")
    assert [m["role"] for m in out] == ["system", "user", "assistant", "system", "user"]
    assert out[3]["content"] == "Context:\n[1] T1\nP one.\n\n[2] P two."
    assert out[4] is messages[3]


def test_field_passages_as_user_prefix_and_all_dropped() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "Q?"}]}]
    plan = plan_chat(messages, [Passage(text="P.")])
    out = render_chat(messages, plan, ["P."], placement="user", header="Context:")
    assert out[0]["content"] == [
        {"type": "text", "text": "Context:\n[1] P."},
        {"type": "text", "text": "Q?"},
    ]
    assert render_chat(messages, plan, [""], placement="system", header="Context:") == messages


def test_tags_in_content_parts_and_multiple_regions_share_one_plan() -> None:
    messages = [
        {"role": "system", "content": "<ragzip:context>S1.\n\nS2.</ragzip:context> rules"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                {"type": "text", "text": "Q? <ragzip:context>U1.</ragzip:context>"},
            ],
        },
    ]
    plan = plan_chat(messages, [Passage(text="F1.")])
    assert [p.text for p in plan.passages] == ["F1.", "S1.", "S2.", "U1."]
    assert plan.default_query == "Q?"
    out = render_chat(messages, plan, ["F1.", "", "S2.", "U1."], placement="system", header="C:")
    assert out[0]["content"] == "S2. rules"
    assert out[1] == {"role": "system", "content": "C:\n[1] F1."}
    assert out[2]["content"][0] is messages[1]["content"][0]
    assert out[2]["content"][1]["text"] == "Q? U1."
    assert messages[1]["content"][1]["text"] == "Q? <ragzip:context>U1.</ragzip:context>"


def test_no_markers_means_no_work() -> None:
    plan = plan_chat([{"role": "user", "content": "plain <b>html</b>"}], [])
    assert not plan.has_work and plan.default_query == "plain <b>html</b>"


def test_completion_prompt_tags_and_prefix() -> None:
    prompt = "Docs: <ragzip:context>A.\n\nB.</ragzip:context>\nQ: what?\nA:"
    plan = plan_completion(prompt, [Passage(text="F.")])
    assert plan.default_query == "Docs: \nQ: what?\nA:"
    out = render_completion(prompt, plan, ["F.", "A.", ""], header="Context:")
    assert out == "Context:\n[1] F.\n\nDocs: A.\nQ: what?\nA:"
    batch = render_completion(["x", "y"], plan_completion(["x", "y"], []), [], header="C")
    assert batch == ["x", "y"]


def test_completion_token_prompt_cannot_take_passages() -> None:
    with pytest.raises(InputError, match="text prompt"):
        plan_completion([1, 2, 3], [Passage(text="F.")])
    assert not plan_completion([[1, 2], [3]], []).has_work
