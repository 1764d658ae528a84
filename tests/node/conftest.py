from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """`devnet start` configures structlog globally, onto a stream pytest may close after the
    test: put the defaults back around every test."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
