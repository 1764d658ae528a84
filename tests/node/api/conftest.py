"""Helpers shared by the API tests that talk raw HTTP to a live node (the `devnet` fixture)."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

from node.pytest_plugin import Devnet


class Answer:
    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status, self.content_type, self.body = status, content_type, body

    def json(self) -> Any:
        assert self.content_type == "application/json", (self.status, self.body[:200])
        return json.loads(self.body)

    def text(self) -> str:
        assert self.content_type.startswith("text/plain"), (self.status, self.body[:200])
        return self.body.decode()


def raw(
    devnet: Devnet, path: str, body: bytes = b"", method: str = "POST", timeout: float = 30
) -> Answer:
    """`body` sent as is, with a JSON content type; the answer whatever its status."""
    url = urlsplit(devnet.url)
    assert url.hostname is not None and url.port is not None
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        connection.request(method, path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return Answer(response.status, response.getheader("content-type", ""), response.read())
    finally:
        connection.close()


def now_ms() -> int:
    """A fresh millisecond nonce, strictly increasing: two requests never share a nonce by
    accident, so none is refused only for its nonce."""
    now = time.time_ns() // 1_000_000
    now_ms.last = max(now, now_ms.last + 1)  # type: ignore[attr-defined]
    return now_ms.last  # type: ignore[attr-defined,no-any-return]


now_ms.last = 0  # type: ignore[attr-defined]
