"""Keeping secrets out of what the proxy says: responses, health reports, logs and metrics.

Two kinds of secret reach the proxy: its settings (the upstream key, its own auth token,
credentials written into the upstream URL) and whatever an upstream server echoes back. Every
text the proxy shows that may hold either goes through :class:`Redactor`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import httpx

MASK = "***"
MAX_UPSTREAM_DETAIL = 300
"""Characters of an upstream error message repeated in the proxy's own error messages."""
MAX_UPSTREAM_BODY = 16 * 1024
"""Bytes of an upstream error body passed back to the client."""

_BEARER = re.compile(rb"(?i)(bearer\s+)[^\s\"',;]+")
_KEYLIKE = re.compile(rb"\b(sk|pk|rk|api|key|token)[-_][A-Za-z0-9_\-]{12,}")
_USERINFO = re.compile(rb"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"']+@")


def redact_url(url: str) -> str:
    """``url`` with any user name and password replaced by :data:`MASK`."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return _USERINFO.sub(rb"\1" + MASK.encode() + b"@", url.encode()).decode()
    if not parsed.userinfo:
        return url
    return str(parsed.copy_with(username=MASK, password=None))


class Redactor:
    """Masks known secrets, bearer tokens, key-like strings and URL credentials.

    Args:
        secrets: Exact strings never to show (the upstream key, the auth token, URL passwords).
    """

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)

    def mask(self, data: bytes, *, limit: int | None = MAX_UPSTREAM_BODY) -> bytes:
        """``data`` with every secret masked, cut to ``limit`` bytes (``None``: no cut)."""
        for secret in self._secrets:
            data = data.replace(secret, MASK.encode())
        data = _BEARER.sub(rb"\1" + MASK.encode(), data)
        data = _KEYLIKE.sub(MASK.encode(), data)
        data = _USERINFO.sub(rb"\1" + MASK.encode() + b"@", data)
        if limit is not None and len(data) > limit:
            data = data[:limit]
        return data

    def secrets_only(self, data: bytes) -> bytes:
        """``data`` with only the configured secrets masked (for successful answers, whose
        content is the model's and must pass unchanged otherwise)."""
        for secret in self._secrets:
            data = data.replace(secret, MASK.encode())
        return data

    def mask_text(self, text: str, *, limit: int | None = MAX_UPSTREAM_DETAIL) -> str:
        """:meth:`mask` for text; cut to ``limit`` characters."""
        out = self.mask(text.encode("utf-8", "replace"), limit=None).decode("utf-8", "replace")
        return out if limit is None or len(out) <= limit else out[:limit] + "…"
