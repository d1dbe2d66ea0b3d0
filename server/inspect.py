"""``GET /inspect``: one self-contained page (no CDN, works offline) where a user pastes a
question and passages, or a whole request body, picks a compressor spec and a budget, and sees
what is kept and dropped, passage by passage, with token counts.

The page only calls ``POST /v1/compress`` from the browser; nothing it sends is stored by the
proxy. It sits behind the proxy's ``auth_token`` like every route (a browser logs in with HTTP
Basic: any user name, the token as password) and ``inspect=False`` (``--no-inspect``) removes it.
"""

from __future__ import annotations

import html
from functools import lru_cache
from importlib.resources import files

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse

from ragzip.server.routes import require_auth, service_of

PAGE_HEADERS = {
    # inline script and style only; the page talks to this proxy and nothing else
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@lru_cache(maxsize=1)
def page_template() -> str:
    """The page's HTML, shipped beside this module."""
    return files("ragzip.server").joinpath("inspect.html").read_text(encoding="utf-8")


def inspect_router() -> APIRouter:
    """The router holding ``GET /inspect``."""
    router = APIRouter(dependencies=[Depends(require_auth)], include_in_schema=False)

    @router.get("/inspect")
    async def inspect(request: Request) -> HTMLResponse:
        settings = service_of(request).settings
        page = page_template()
        page = page.replace("{{default_compressor}}", html.escape(settings.default_compressor))
        page = page.replace("{{default_budget}}", html.escape(settings.default_budget))
        return HTMLResponse(page, headers=PAGE_HEADERS)

    return router
