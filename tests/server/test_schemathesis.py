"""Property-based API tests with schemathesis, generated from the proxy's own OpenAPI schema.

Requests are sent over loopback to a proxy (uvicorn) in front of the fake upstream; no generated
input may make the proxy answer a 5xx. The same run from a shell, against a running proxy::

    schemathesis run http://127.0.0.1:8080/openapi.json --checks not_a_server_error
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import pytest

from ragzip.server import create_app

from .conftest import FakeUpstream, ServerThread, build_fake_upstream, proxy_settings

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

pytestmark = pytest.mark.slow
TOKEN = "schemathesis-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def api_schema(minilm_counter: Any) -> Iterator[Any]:
    fake = FakeUpstream()
    with ServerThread(build_fake_upstream(fake)) as upstream:
        app = create_app(
            proxy_settings(
                upstream.url,
                compressors=["truncate", "identity"],
                max_request_bytes=64 * 1024,
                auth_token=TOKEN,  # the protected app: its schema and every route behind auth
            ),
            counter=minilm_counter,
        )
        with ServerThread(app) as proxy:
            yield schemathesis.openapi.from_url(proxy.url + "/openapi.json", headers=AUTH)


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_server_errors(api_schema: Any, mode: str) -> None:
    """Valid and invalid requests for every operation: never a 5xx."""
    generation = schemathesis.GenerationMode(mode)
    labels = []
    statuses: collections.Counter[int] = collections.Counter()
    for result in api_schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        if generation is schemathesis.GenerationMode.NEGATIVE and operation.method != "post":
            continue  # a GET without parameters has no invalid form

        @given(case=operation.as_strategy(generation_mode=generation))
        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call(headers=AUTH, timeout=30)
            statuses[response.status_code] += 1
            case.validate_response(response, checks=[not_a_server_error])

        run()
    assert "POST /v1/chat/completions" in labels and "POST /v1/compress" in labels
    assert "GET /readyz" in labels and "GET /metrics" in labels
    assert statuses[200 if mode == "positive" else 400] > 0, statuses
