"""The saved latency profile of one generator on one machine: its model, JSON form and lookup."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragzip.core import machine as host
from ragzip.core.errors import ConfigError, InputError
from ragzip.core.jsonl import read_json_object
from ragzip.experiments.reporting import json_ready
from ragzip.profiling.fit import LinearModel, QuadraticModel
from ragzip.profiling.samples import (
    CompressionSample,
    CompressorCost,
    GenerationSample,
    Prediction,
    candidate_key,
)

if TYPE_CHECKING:
    pass


logger = logging.getLogger(__name__)

SCHEMA = "ragzip-profile/1"
JSON_NAME = "profile.json"
SHIPPED_PROFILE = Path(__file__).resolve().parents[1] / "data" / "default_profile.json"
"""The portable default: the embedded generator profiled on a 2-core x86-64 CPU, used by
``auto`` (with a warning) until ``ragzip profile`` has measured this machine."""


def user_profile_path() -> Path:
    """Where ``ragzip profile`` saves, and ``auto`` first looks: the user cache folder."""
    from ragzip.weights import cache_dir

    return cache_dir() / "profile" / JSON_NAME


def find_profile(path: str | Path | None = None, *, generator: str | None = None) -> Profile:
    """The profile ``auto`` uses.

    Args:
        path: A profile file to use as it is (this machine's profile must be in it). ``None``:
            this machine's profile in :func:`user_profile_path`, else the shipped portable
            default (:data:`SHIPPED_PROFILE`), with a warning that it was measured elsewhere.
        generator: The generator's name, when the file holds several.

    Raises:
        ConfigError: No usable profile.
    """
    if path is not None:
        return load_profile(path, generator=generator)
    mine = user_profile_path()
    if mine.is_file():
        try:
            return load_profile(mine, generator=generator)
        except ConfigError:
            pass  # another machine's or generator's: fall through to the portable default
    return load_profile(SHIPPED_PROFILE, generator=generator, any_machine=True)


@dataclass(frozen=True)
class Profile:
    """Fitted latency models of one generator on one machine, with the measurements behind them.

    Attributes:
        machine: :func:`machine_key` of the machine measured.
        generator: The generator's name.
        ttft: ``TTFT(p)`` over prompt tokens ``p``.
        decode: Decode seconds per token over prompt tokens.
        prompt_overhead_tokens: Prompt tokens beyond the context (template, instructions, question).
        prompt_overhead_per_token: Further prompt tokens per context token (passage numbering and
            titles grow with the context): prompt = context · (1 + this) + the fixed overhead.
        compressors: The fitted cost of each (compressor, ratio).
        expected_output_tokens: Answer length assumed for end-to-end predictions.
        kv_bytes_per_token: KV-cache bytes one prompt token takes (``None`` for remote models).
        max_context_tokens: The generator's context window when known.
        peak_rss_bytes: Peak resident memory of the profiling process.
        generation_samples: Measured generator timings.
        compression_samples: Measured compression timings.
        created_at: ISO timestamp.
    """

    machine: str
    generator: str
    ttft: QuadraticModel
    decode: LinearModel
    prompt_overhead_tokens: int
    compressors: tuple[CompressorCost, ...]
    expected_output_tokens: int = 32
    kv_bytes_per_token: int | None = None
    max_context_tokens: int | None = None
    peak_rss_bytes: int | None = None
    generation_samples: tuple[GenerationSample, ...] = ()
    compression_samples: tuple[CompressionSample, ...] = ()
    created_at: str = ""
    prompt_overhead_per_token: float = 0.0

    @property
    def key(self) -> str:
        """``machine|generator``: where the profile is filed in a profile JSON."""
        return f"{self.machine}|{self.generator}"

    def cost(self, compressor: str, ratio: float) -> CompressorCost:
        """The fitted cost of ``compressor`` at ``ratio``.

        Raises:
            ConfigError: The pair was not profiled (the message lists those that were).
        """
        key = candidate_key(compressor, ratio)
        for c in self.compressors:
            if c.key == key:
                return c
        known = ", ".join(c.key for c in self.compressors) or "none"
        msg = f"{key} was not profiled for {self.generator}; profiled: {known}"
        raise ConfigError(msg)

    def _generation_s(self, context: np.ndarray, output_tokens: int) -> tuple[Any, Any]:
        prompt = context * (1.0 + self.prompt_overhead_per_token) + self.prompt_overhead_tokens
        ttft = np.maximum(self.ttft(prompt), 0.0)
        decode = np.maximum(self.decode(prompt), 0.0) * max(output_tokens - 1, 0)
        return ttft, ttft + decode

    def predict(
        self,
        compressor: str,
        ratio: float,
        n: int,
        *,
        expected_output_tokens: int | None = None,
        cached_share: float = 0.0,
    ) -> Prediction:
        """Predicted latency of a context of ``n`` tokens with and without compression.

        Args:
            compressor: Registry name of a profiled compressor.
            ratio: A profiled ratio.
            n: Context tokens before compression.
            expected_output_tokens: Answer length; defaults to the profile's.
            cached_share: Share of the request's features the compressor has cached (its cost
                moves from the cold line to the warm one).
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            msg = f"n must be a non-negative int, got {n!r}"
            raise InputError(msg)
        cost = self.cost(compressor, ratio)
        out = (
            self.expected_output_tokens
            if expected_output_tokens is None
            else expected_output_tokens
        )
        # A soft compressor's vector count follows its passages, not the requested ratio: use
        # the measured ratio where it compresses further than asked.
        achieved = cost.achieved_ratio if math.isfinite(cost.achieved_ratio) else 0.0
        m = int(n // max(float(ratio), achieved))
        tc = max(float(cost.seconds(n, cached_share)), 0.0)
        base_ttft, base = self._generation_s(np.asarray(float(n)), out)
        comp_ttft, comp = self._generation_s(np.asarray(float(m)), out)
        return Prediction(
            context_tokens=int(n),
            compressed_tokens=m,
            compression_s=tc,
            baseline_ttft_s=float(base_ttft),
            compressed_ttft_s=tc + float(comp_ttft),
            baseline_s=float(base),
            compressed_s=tc + float(comp),
        )

    def curves(
        self, compressor: str, ratio: float, ns: np.ndarray, *, end_to_end: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted seconds without and with compression over the lengths ``ns`` (vectorised)."""
        cost = self.cost(compressor, ratio)
        n = np.asarray(ns, dtype=float)
        m = np.floor(n / float(ratio))
        out = self.expected_output_tokens if end_to_end else 1
        base_ttft, base = self._generation_s(n, out)
        comp_ttft, comp = self._generation_s(m, out)
        tc = np.maximum(cost.cost(n), 0.0)
        if end_to_end:
            return base, tc + comp
        return base_ttft, tc + comp_ttft

    def break_even(
        self,
        compressor: str,
        ratio: float,
        *,
        end_to_end: bool = False,
        n_max: int | None = None,
    ) -> int | None:
        """The smallest context length at which compressing is predicted to be faster.

        Args:
            compressor: Registry name of a profiled compressor.
            ratio: A profiled ratio.
            end_to_end: Compare whole-answer latency (with the expected output length) instead of
                time to first token.
            n_max: Largest length searched; the generator's context window, else 32,768.

        Returns:
            ``n*``, or ``None`` when compression never wins up to ``n_max``.
        """
        limit = n_max or self.max_context_tokens or 32_768
        ns = np.arange(1, int(limit) + 1)
        base, comp = self.curves(compressor, ratio, ns, end_to_end=end_to_end)
        wins = np.flatnonzero(comp < base)
        return int(ns[wins[0]]) if wins.size else None

    def kv_bytes_saved(self, ratio: float, n: int) -> int | None:
        """KV-cache bytes not allocated when ``n`` context tokens shrink by ``ratio``."""
        if self.kv_bytes_per_token is None:
            return None
        return self.kv_bytes_per_token * (n - int(n // float(ratio)))

    # -- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`from_dict`)."""
        out = asdict(self)
        out["compressors"] = {c.key: asdict(c) for c in self.compressors}
        return json_ready(out)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Rebuild a profile written by :meth:`to_dict`.

        Raises:
            ConfigError: Missing or malformed fields.
        """
        try:
            comps = data["compressors"]
            items = comps.values() if isinstance(comps, Mapping) else comps
            return cls(
                machine=str(data["machine"]),
                generator=str(data["generator"]),
                ttft=QuadraticModel(**data["ttft"]),
                decode=LinearModel(**data["decode"]),
                prompt_overhead_tokens=int(data["prompt_overhead_tokens"]),
                compressors=tuple(
                    CompressorCost(
                        compressor=str(c["compressor"]),
                        ratio=float(c["ratio"]),
                        cost=LinearModel(**c["cost"]),
                        achieved_ratio=_num(c.get("achieved_ratio")),
                        warm_cost=LinearModel(**c["warm_cost"]) if c.get("warm_cost") else None,
                    )
                    for c in items
                ),
                expected_output_tokens=int(data.get("expected_output_tokens", 32)),
                kv_bytes_per_token=_opt_int(data.get("kv_bytes_per_token")),
                max_context_tokens=_opt_int(data.get("max_context_tokens")),
                peak_rss_bytes=_opt_int(data.get("peak_rss_bytes")),
                generation_samples=tuple(
                    GenerationSample(**{**s, "decode_s_per_token": _num(s["decode_s_per_token"])})
                    for s in data.get("generation_samples", ())
                ),
                compression_samples=tuple(
                    CompressionSample(**s) for s in data.get("compression_samples", ())
                ),
                created_at=str(data.get("created_at", "")),
                prompt_overhead_per_token=float(data.get("prompt_overhead_per_token", 0.0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = f"malformed profile: {exc!r}"
            raise ConfigError(msg) from exc


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def save_profile(profile: Profile, path: str | Path) -> Path:
    """Write ``profile`` into the JSON file at ``path`` under :attr:`Profile.key`.

    Profiles of other machines or generators already in the file are kept.
    """
    path = Path(path)
    doc: dict[str, Any] = {"schema": SCHEMA, "profiles": {}}
    if path.is_file():
        doc = _read_doc(path)
    doc["profiles"][profile.key] = profile.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _read_doc(path: Path) -> dict[str, Any]:
    doc = read_json_object(path, "profile file", ConfigError)
    if doc.get("schema") != SCHEMA:
        msg = f"{path} is not a ragzip profile file (schema {SCHEMA!r} expected)"
        raise ConfigError(msg)
    if not isinstance(doc.get("profiles"), dict):
        msg = f"{path} has no 'profiles' mapping"
        raise ConfigError(msg)
    return doc


def load_profile(
    path: str | Path,
    *,
    generator: str | None = None,
    machine: str | None = None,
    any_machine: bool = False,
) -> Profile:
    """Read a profile from a file written by :func:`save_profile`.

    Args:
        path: The JSON file.
        generator: The generator's name; may be left out when the file holds one profile for
            the machine.
        machine: A :func:`machine_key`; defaults to this machine's.
        any_machine: When the file holds no profile of this machine, take the generator's
            profile measured on another one (with a warning that says so) instead of failing.

    Raises:
        ConfigError: No such file, a foreign file, or no (unique) profile for the machine and
            generator (the message lists the profiles present).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"no profile file at {path}: run `ragzip profile` first"
        raise ConfigError(msg)
    profiles: dict[str, Any] = _read_doc(path)["profiles"]
    machine = machine or host.machine_key()
    mine = [p for p in profiles.values() if generator is None or p.get("generator") == generator]
    found = [p for p in mine if p.get("machine") == machine]
    if not found and any_machine and len(mine) == 1:
        logger.warning(
            "no latency profile of this machine (%s) in %s: using the one measured on %s; "
            "run `ragzip profile` to calibrate `auto` here",
            machine,
            path,
            mine[0].get("machine"),
        )
        found = mine
    if len(found) != 1:
        what = "no profile" if not found else "several profiles"
        msg = (
            f"{what} for machine {machine!r} and generator {generator or 'any'!r} in {path}; "
            f"present: {', '.join(profiles) or 'none'}"
        )
        raise ConfigError(msg)
    return Profile.from_dict(found[0])
