"""ragzip inside the LiteLLM proxy: a ``CustomLogger`` that compresses marked context before each
chat completion.

Context is marked as for ``ragzip serve`` (see :mod:`ragzip.server.context`): the ``ragzip``
request field (``{"passages": [...], "budget": "4x", "compressor": "mig"}``) and
``<ragzip:context>`` tags in messages. Compression is opt-in; the most specific setting wins:

1. the request: ``metadata: {"ragzip": true | false | {...}}``, or a ``ragzip`` field (which opts
   the request in unless its metadata says ``false``);
2. the key's metadata ``{"ragzip": ...}``; 3. the team's metadata; 4. the hook's ``enabled``.

A dict at any level also sets ``compressor`` and ``budget`` (request over key over team over the
hook's own). A request that is not opted in still has its ``ragzip`` passages inserted and its
tags removed, uncompressed: the upstream never sees ragzip's markup and no context is lost.

Failures fail open: when the compressor fails (a model that does not load, a crash, a timeout),
the request goes on uncompressed, ``failures`` counts it and the log names the error without any
request content. A malformed request (bad budget, unknown compressor, no question) is refused
with a 400. Figures go back as ``x-ragzip-*`` response headers, as from ``ragzip serve``.

``config.yaml``::

    litellm_settings:
      callbacks: ragzip.integrations.litellm_hook.handler   # defaults: opted in per key/team
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ragzip.core.errors import (
    BudgetError,
    ConfigError,
    InputError,
    RegistryError,
    needs_extra,
)
from ragzip.core.types import Budget
from ragzip.integrations.common import (
    DEFAULT_BUDGET,
    DEFAULT_COMPRESSOR,
    as_budget,
    shared_compressor,
)
from ragzip.server.compression import question_of, require_question
from ragzip.server.context import ContextPlan, PlanLayout, plan_chat, render_chat
from ragzip.server.schemas import RagzipOptions, RagzipUsage

with needs_extra("litellm", "the LiteLLM hook needs litellm's proxy"):
    from fastapi import HTTPException
    from litellm.integrations.custom_logger import CustomLogger

logger = logging.getLogger("ragzip.litellm")
CHAT_CALLS = frozenset({"completion", "acompletion"})
CLIENT_ERRORS = (InputError, ConfigError, RegistryError, ValidationError)
_REMEMBERED = 4096  # usage kept for the response-header hook, per call id


def _level(value: Any, where: str) -> tuple[bool | None, dict[str, Any]]:
    """``(enabled, settings)`` of one level's ``ragzip`` value."""
    if value is None:
        return None, {}
    if isinstance(value, bool):
        return value, {}
    if isinstance(value, Mapping):
        settings = dict(value)
        unknown = set(settings) - {"enabled", "compressor", "budget"}
        if unknown:
            msg = f"{where} ragzip settings: unknown keys {sorted(unknown)}"
            raise InputError(msg)
        enabled = settings.pop("enabled", True)
        if not isinstance(enabled, bool):
            msg = f"{where} ragzip settings: 'enabled' must be true or false"
            raise InputError(msg)
        return enabled, settings
    msg = f"{where} ragzip setting must be true, false or an object, got {type(value).__name__}"
    raise InputError(msg)


class RagzipLiteLLMHook(CustomLogger):
    """Compress the marked context of chat completions in the LiteLLM proxy.

    Args:
        compressor: Default compressor spec (``"mig"``); loaded once per process, shared.
        budget: Default budget (``"4x"``).
        tokenizer: What budgets are counted in: ``None`` (SmolLM2's tokenizer), ``"gemma3-270m"``
            or the folder of the upstream model's Hugging Face tokenizer.
        enabled: Compress requests that no level opts in or out.
        timeout_s: Seconds a compression may take before the request goes on uncompressed.
        header: The line above the context block made of ``ragzip`` passages.
    """

    def __init__(
        self,
        compressor: str = DEFAULT_COMPRESSOR,
        budget: str | int = DEFAULT_BUDGET,
        *,
        tokenizer: str | None = None,
        enabled: bool = False,
        timeout_s: float = 30.0,
        header: str = "Context:",
    ) -> None:
        super().__init__()
        self.compressor, self.budget = compressor, as_budget(budget)
        self.tokenizer, self.enabled, self.timeout_s, self.header = (
            tokenizer,
            enabled,
            timeout_s,
            header,
        )
        self.failures = 0
        """Compressions that failed and went on uncompressed."""
        self._headers: OrderedDict[str, dict[str, str]] = OrderedDict()

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any]:
        """Compress the request's marked context (LiteLLM calls this before each call)."""
        try:
            return await self._pre_call(user_api_key_dict, data, call_type)
        except CLIENT_ERRORS as exc:
            raise HTTPException(status_code=400, detail=f"ragzip: {exc}") from exc

    async def _pre_call(self, auth: Any, data: dict[str, Any], call_type: str) -> dict[str, Any]:
        raw_field = data.pop("ragzip", None)
        options = RagzipOptions.model_validate(raw_field) if raw_field is not None else None
        if options is not None and (options.retrieve or options.k is not None):
            msg = "the LiteLLM hook does not retrieve: send passages or tags instead"
            raise InputError(msg)
        messages = data.get("messages")
        if call_type not in CHAT_CALLS or not isinstance(messages, list):
            if options is not None:
                msg = "ragzip passages are supported on chat completions only"
                raise InputError(msg)
            return data
        plan = plan_chat(messages, options.passage_list() if options else [])
        if not plan.has_work:
            return data
        enabled, name, budget = self._settings(auth, data, options)
        kept = [p.text for p in plan.passages]
        headers: dict[str, str] = {}
        if enabled:
            query = question_of(plan, options)
            require_question(query)
            kept, headers = await self._compress(plan, query, name, budget)
        data["messages"] = render_chat(messages, plan, kept, placement="system", header=self.header)
        call_id = data.get("litellm_call_id")
        if headers and isinstance(call_id, str):
            self._headers[call_id] = headers
            while len(self._headers) > _REMEMBERED:
                self._headers.popitem(last=False)
        return data

    def _settings(
        self, auth: Any, data: Mapping[str, Any], options: RagzipOptions | None
    ) -> tuple[bool, str, Budget]:
        metadata = data.get("metadata")
        request = metadata.get("ragzip") if isinstance(metadata, Mapping) else None
        levels = [  # least specific first
            (self.enabled, {}),
            _level((getattr(auth, "team_metadata", None) or {}).get("ragzip"), "team"),
            _level((getattr(auth, "metadata", None) or {}).get("ragzip"), "key"),
        ]
        if options is not None:
            levels.append((True, {}))
        levels.append(_level(request, "request"))
        enabled = next((on for on, _ in reversed(levels) if on is not None), False)
        merged: dict[str, Any] = {}
        for _, settings in levels:
            merged.update(settings)
        name = str(merged.get("compressor", self.compressor))
        budget = as_budget(merged["budget"]) if "budget" in merged else self.budget
        if options is not None:
            name = options.compressor if options.compressor is not None else name
            budget = options.budget_or(budget)
        return enabled, name, budget

    async def _compress(
        self, plan: ContextPlan, query: str, name: str, budget: Budget
    ) -> tuple[list[str], dict[str, str]]:
        from ragzip.registry import parse_spec, resolve_config

        resolve_config(parse_spec(name))  # a bad spec is the client's error, before any work
        start = time.perf_counter()
        layout = PlanLayout(plan, self.header, prefix_block=False)
        try:
            compressor = await asyncio.to_thread(shared_compressor, name, self.tokenizer)
            result = await asyncio.wait_for(
                compressor.acompress(query, plan.passages, budget=budget, layout=layout),
                timeout=self.timeout_s,
            )
        except (InputError, BudgetError):  # the request's own: refused, never hidden
            raise
        except Exception as exc:  # the server's: the request goes on uncompressed
            self.failures += 1
            logger.warning(
                "ragzip: compression with %r failed (%s), forwarding uncompressed",
                name,
                type(exc).__name__,
            )
            failed = {"x-ragzip-compressor": name, "x-ragzip-fallback": "compression-failed"}
            return [p.text for p in plan.passages], failed
        if result.embeddings is not None:
            msg = f"compressor {name!r} returns embeddings; the LiteLLM hook sends text"
            raise ConfigError(msg)
        usage = RagzipUsage.of(result, name, passages=len(plan.passages), start=start)
        return [p.text for p in result.passages], usage.headers()

    async def async_post_call_response_headers_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: Any,
        response: Any,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, object] | None = None,
    ) -> dict[str, str] | None:
        """The ``x-ragzip-*`` headers of the call's compression (none when nothing ran)."""
        call_id = data.get("litellm_call_id")
        return self._headers.pop(call_id, None) if isinstance(call_id, str) else None


handler = RagzipLiteLLMHook()
"""The hook with ragzip's defaults (``mig`` at 4x, opted in per request, key or team): name it
in ``litellm_settings.callbacks`` as ``ragzip.integrations.litellm_hook.handler``."""
