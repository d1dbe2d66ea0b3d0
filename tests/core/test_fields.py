"""Settings checked from their declaration (ragzip.core.fields)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pytest

from ragzip.core.coerce import coerce_options
from ragzip.core.errors import ConfigError
from ragzip.core.fields import Checked, Count, Ge, Interval, PositiveInt, Share


@dataclass(frozen=True)
class Settings(Checked):
    size: PositiveInt = 4
    spare: Count = 0
    share: Share = 0.5
    cut: Annotated[float, Interval(gt=0, lt=1)] | None = None
    window: Annotated[int, Ge(32)] = 64
    mode: Literal["fast", "exact"] = "fast"
    flag: bool = False
    name: str | None = None


@dataclass(frozen=True)
class Window(Checked):
    low: Count = 0
    high: Count = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low > self.high:
            msg = f"low ({self.low}) above high ({self.high})"
            raise ConfigError(msg)


def test_a_subclass_rule_runs_on_fields_already_checked() -> None:
    with pytest.raises(ConfigError, match="low must be an int >= 0, got -1"):
        Window(low=-1, high=-2)
    with pytest.raises(ConfigError, match=r"low \(2\) above high \(1\)"):
        Window(low=2, high=1)
    assert Window(low=1, high=1).high == 1


def test_defaults_and_values_inside_their_bounds_pass() -> None:
    Settings()
    Settings(size=1, spare=0, share=1, cut=0.5, window=32, mode="exact", flag=True, name="x")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"size": 0}, "size must be an int >= 1, got 0"),
        ({"size": True}, "size must be an int, got True"),
        ({"size": 2.0}, "size must be an int, got 2.0"),
        ({"spare": -1}, "spare must be an int >= 0, got -1"),
        ({"share": 1.5}, "share must be a finite number >= 0 and <= 1, got 1.5"),
        ({"share": float("nan")}, "share must be a finite number, got nan"),
        ({"share": "0.5"}, "share must be a finite number, got '0.5'"),
        ({"cut": 1.0}, "cut must be a finite number > 0 and < 1, got 1.0"),
        ({"window": 31}, "window must be an int >= 32, got 31"),
        ({"mode": "slow"}, "mode must be one of fast, exact, got 'slow'"),
        ({"flag": 1}, "flag must be true or false, got 1"),
        ({"name": 3}, "name must be a string, got 3"),
    ],
)
def test_a_value_outside_its_declaration_names_field_rule_and_value(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_a_path_for_a_string_field_is_kept_as_its_text(tmp_path: Path) -> None:
    """A folder given as a ``Path`` (trained weights, a profile) is accepted and stored as text,
    so what reads the setting sees one type."""
    settings = Settings(name=tmp_path)  # type: ignore[arg-type]
    assert settings.name == str(tmp_path) and isinstance(settings.name, str)
    from ragzip.compressors.sentence import SentenceCompressor

    assert SentenceCompressor.Config(weights=tmp_path).weights == str(tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="size must be an int"):
        Settings(size=tmp_path)  # type: ignore[arg-type]


def test_none_is_accepted_only_where_declared() -> None:
    assert Settings(cut=None, name=None).cut is None
    with pytest.raises(ConfigError, match="size must be an int"):
        Settings(size=None)  # type: ignore[arg-type]


def test_text_settings_are_typed_by_the_same_declaration() -> None:
    typed = coerce_options(Settings, {"size": "8", "cut": "none", "mode": "exact", "flag": "on"})
    assert typed == {"size": 8, "cut": None, "mode": "exact", "flag": True}
    assert Settings(**typed).size == 8
    with pytest.raises(ConfigError, match="size must be an int >= 1"):
        Settings(**coerce_options(Settings, {"size": "0"}))
