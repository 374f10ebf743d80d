from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.fakes.web import FakeWeb


@pytest.fixture(scope="module")
def web() -> Iterator[FakeWeb]:
    with FakeWeb(slow_seconds=3.0, huge_bytes=3_000_000) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client
