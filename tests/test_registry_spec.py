"""Compressor specs: ``NAME[:KEY=VALUE[;KEY=VALUE...]]`` read into typed ``Config`` dataclasses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ragzip
from ragzip import Budget
from ragzip.core.coerce import coerce_options
from ragzip.core.errors import ConfigError, RegistryError
from ragzip.core.tokenization import TokenCounter
from ragzip.registry import CompressorSpec, create_compressor, get_class, parse_spec, parse_specs

PASSAGES = [
    "The river Seine flows through Paris. It is 777 km long. Boats carry tourists.",
    "Paris is the capital of France. About two million people live there. It hosts museums.",
]


def test_name_only_and_settings() -> None:
    assert parse_spec("mig") == CompressorSpec("mig")
    spec = parse_spec(" sentence : mode = budgeted ; threshold=0.4 ;")
    assert spec.name == "sentence"
    assert spec.options == (("mode", "budgeted"), ("threshold", "0.4"))
    assert spec.label == "sentence:mode=budgeted;threshold=0.4" == str(spec)
    assert parse_spec(spec.label) == spec
    assert parse_spec(spec) is spec


def test_values_take_the_field_types() -> None:
    config = parse_spec("sentence:mode=budgeted;threshold=0.4;min_sentences=2").build_config()
    assert config == get_class("sentence").Config(  # type: ignore[attr-defined]
        mode="budgeted", threshold=0.4, min_sentences=2
    )
    assert parse_spec("sentence:threshold=none;device=null").build_config().threshold is None
    token = get_class("token").Config  # type: ignore[attr-defined]
    values = coerce_options(
        token, {"force_keep": "Paris|777", "force_numbers": "yes", "quantize": "int8"}
    )
    assert values == {"force_keep": ("Paris", "777"), "force_numbers": True, "quantize": "int8"}
    assert coerce_options(token, {"length_bucketing": "off"}) == {"length_bucketing": False}
    assert parse_spec("random:seed=7;granularity=word").build_config() == get_class(
        "random"
    ).Config(seed=7, granularity="word")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("nope", RegistryError, "choose one of"),
        ("nope:seed=1", RegistryError, "choose one of"),
        (":seed=1", ConfigError, "has no name"),
        ("", ConfigError, "has no name"),
        ("random:seed", ConfigError, "key=value"),
        ("random:seed=", ConfigError, "key=value"),
        ("random:=1", ConfigError, "key=value"),
        ("random:seed=1;seed=2", ConfigError, "twice"),
        ("threshold=0.4", ConfigError, "not a compressor name"),
        ("sentence:mode=adaptive,threshold=0.4", ConfigError, "separate settings with ';'"),
    ],
)
def test_malformed_specs(text: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_spec(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("random:seed=abc", "seed must be an integer, got 'abc'"),
        ("random:granularity=char", "granularity must be one of sentence, word"),
        ("random:sede=1", r"unknown RandomCompressor.Config keys \['sede'\]; valid keys: "),
        ("token:force_patterns=maybe", "force_patterns must be true or false"),
        ("sentence:threshold=high", "threshold must be a number"),
        ("sentence:threshold=1.5", "threshold must be a finite number >= 0 and <= 1"),
        ("sentence:mode=greedy", "mode must be one of adaptive, budgeted"),
        ("truncate:keep=1", "takes no settings"),
    ],
)
def test_bad_values_are_config_errors_naming_the_spec(text: str, message: str) -> None:
    spec = parse_spec(text)
    with pytest.raises(ConfigError, match=message) as info:
        spec.build_config()
    assert f"compressor spec {text!r}" in str(info.value)


def test_lists_of_specs() -> None:
    specs = parse_specs("sentence:mode=budgeted, sentence:mode=adaptive;threshold=0.3,mig,mig")
    assert [s.label for s in specs] == [
        "sentence:mode=budgeted",
        "sentence:mode=adaptive;threshold=0.3",
        "mig",
    ]
    with pytest.raises(ConfigError, match="at least one"):
        parse_specs(" , ")
    with pytest.raises(ConfigError, match="not a compressor name"):
        parse_specs("sentence:mode=adaptive,threshold=0.3")


@given(seed=st.integers(min_value=-(2**40), max_value=2**40), word=st.booleans())
def test_label_round_trips(seed: int, word: bool) -> None:
    granularity = "word" if word else "sentence"
    spec = parse_spec(f"random:seed={seed};granularity={granularity}")
    assert parse_spec(spec.label) == spec
    config = spec.build_config()
    assert (config.seed, config.granularity) == (seed, granularity)


def test_create_compressor_from_a_spec(minilm_counter: TokenCounter) -> None:
    by_spec = create_compressor("random:seed=3", counter=minilm_counter)
    by_mapping = ragzip.create_compressor("random", counter=minilm_counter, config={"seed": 3})
    assert by_spec.config == by_mapping.config  # type: ignore[attr-defined]
    budget = Budget.compression(2)
    query = "How long is the Seine?"
    assert (
        by_spec.compress(query, PASSAGES, budget=budget).to_dict()["passages"]
        == by_mapping.compress(query, PASSAGES, budget=budget).to_dict()["passages"]
    )
    seeds = {
        tuple(
            tuple(p.spans)
            for p in create_compressor(f"random:seed={s}", counter=minilm_counter)
            .compress(query, PASSAGES * 3, budget=budget)
            .passages
        )
        for s in range(6)
    }
    assert len(seeds) > 1  # the seed from the spec reaches the compressor


def test_spec_settings_merge_with_a_config(minilm_counter: TokenCounter) -> None:
    random_config = get_class("random").Config  # type: ignore[attr-defined]
    comp = create_compressor(
        "random:seed=5", counter=minilm_counter, config={"granularity": "word"}
    )
    assert comp.config == random_config(seed=5, granularity="word")  # type: ignore[attr-defined]
    comp = create_compressor(
        "random:seed=5", counter=minilm_counter, config=random_config(granularity="word")
    )
    assert comp.config == random_config(seed=5, granularity="word")  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="both set"):
        create_compressor("random:seed=5", counter=minilm_counter, config={"seed": 1})
    with pytest.raises(ConfigError, match="takes no settings"):
        create_compressor("truncate:keep=3", counter=minilm_counter)
