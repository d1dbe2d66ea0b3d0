"""Upstream errors read in the client's message numbering."""

from __future__ import annotations

import json

from ragzip.server.errors import client_message_indices


def test_positions_after_the_inserted_message_move_back_by_one() -> None:
    body = json.dumps(
        {
            "error": {
                "message": "messages.3.content: bad; messages[1] ok; messages.0 first",
                "loc": ["body", "messages", 3, "content"],
            }
        }
    ).encode()
    data = json.loads(client_message_indices(body, inserted=1))
    assert data["error"]["message"] == "messages.2.content: bad; messages[ragzip_context] ok; " + (
        "messages.0 first"
    )
    assert data["error"]["loc"] == ["body", "messages", 2, "content"]


def test_the_inserted_message_is_named_and_the_body_stays_json() -> None:
    body = b'{"detail": [{"loc": ["body", "messages", 1]}], "m": "messages.1.content"}'
    data = json.loads(client_message_indices(body, inserted=1))
    assert data["detail"][0]["loc"] == ["body", "messages", "ragzip_context"]
    assert data["m"] == "messages.ragzip_context.content"
    assert client_message_indices(b"\xff\xfe", inserted=0) == b"\xff\xfe"
