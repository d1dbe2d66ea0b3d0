"""ProxyService internals that HTTP tests reach only by timing: disconnects while waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ragzip.core.errors import UpstreamError
from ragzip.server.metrics import Metrics
from ragzip.server.service import ProxyService
from ragzip.server.upstream import UpstreamReply

from .conftest import proxy_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeRequest:
    """Just what ``_until_disconnect`` uses of a request: its ASGI ``receive``."""

    def __init__(self, disconnect: asyncio.Event) -> None:
        self.disconnect = disconnect

    async def receive(self) -> dict[str, Any]:
        await self.disconnect.wait()
        return {"type": "http.disconnect"}


@pytest.fixture
async def service(minilm_counter: Any) -> AsyncIterator[ProxyService]:
    svc = ProxyService(proxy_settings("http://127.0.0.1:9"), Metrics(), counter=minilm_counter)
    yield svc
    await svc.aclose()


async def test_answer_before_disconnect(service: ProxyService) -> None:
    reply = UpstreamReply(status=200, headers={})

    async def quick() -> UpstreamReply:
        await asyncio.sleep(0.01)
        return reply

    assert await service._until_disconnect(FakeRequest(asyncio.Event()), quick()) is reply  # type: ignore[arg-type]


async def test_disconnect_cancels_the_work(service: ProxyService) -> None:
    gone = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow() -> UpstreamReply:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return UpstreamReply(status=200, headers={})

    asyncio.get_running_loop().call_later(0.05, gone.set)
    assert await service._until_disconnect(FakeRequest(gone), slow()) is None  # type: ignore[arg-type]
    assert cancelled.is_set()
    assert service.metrics.disconnects._value.get() == 1
    await asyncio.sleep(0.01)  # this task is not left with a pending cancellation


async def test_errors_and_outer_cancellation_propagate(service: ProxyService) -> None:
    async def failing() -> UpstreamReply:
        await asyncio.sleep(0)
        raise UpstreamError("upstream broke")

    with pytest.raises(UpstreamError, match="upstream broke"):
        await service._until_disconnect(FakeRequest(asyncio.Event()), failing())  # type: ignore[arg-type]

    task = asyncio.ensure_future(
        service._until_disconnect(FakeRequest(asyncio.Event()), asyncio.sleep(30))  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert service.metrics.disconnects._value.get() == 0
