"""The classifier's input layout (ragzip.compressors.sentence.features)."""

from __future__ import annotations

from typing import Any

from ragzip.compressors.sentence.features import (
    CONTEXT,
    QUESTION,
    SENTENCE,
    SPECIAL,
    Featurizer,
    InputLimits,
    PassageSentences,
)

# ---------------------------------------------------------------------------- featurizer


def test_featurizer_layout(tokenizer: Any) -> None:
    limits = InputLimits(query=8, sentence=6, title=3, context=10)
    feat = Featurizer(tokenizer, limits)
    passage = PassageSentences(
        title="Alpha Beta",
        sentences=("one two three.", "four five six seven eight nine ten eleven.", "twelve."),
    )
    enc = feat.encode("who is it", [passage])
    assert len(enc) == 3
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for e in enc:
        assert len(e.input_ids) == len(e.token_type_ids) <= limits.max_length
        assert e.input_ids[0] == cls and e.input_ids[-1] == sep
        assert list(e.input_ids).count(sep) == 3
        first_sep = e.input_ids.index(sep)
        assert set(e.token_type_ids[: first_sep + 1]) == {0}
        assert set(e.token_type_ids[first_sep + 1 :]) == {1}
        assert len(e.segment_ids) == len(e.input_ids)
        for tok_id, seg in zip(e.input_ids, e.segment_ids, strict=True):
            assert (seg == SPECIAL) == (tok_id in (cls, sep))
        assert e.segment_ids[1:first_sep] == (QUESTION,) * (first_sep - 1)
        assert SENTENCE in e.segment_ids and CONTEXT in e.segment_ids
    # the middle sentence is cut to 6 tokens in the classifier's view; its context holds the
    # title, the end of the sentence before and the start of the one after
    middle = tokenizer.decode(list(enc[1].input_ids))
    assert "four five six seven eight nine" in middle and "eleven" not in middle.split("[SEP]")[1]
    context = middle.split("[SEP]")[2]
    assert context.strip().startswith("alpha beta :")
    assert "three" in context and "twelve" in context
