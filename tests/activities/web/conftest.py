from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from models.netguard import guarded_client
from tests.fakes.web import FakeWeb

# The fixture web listens on loopback: allowed here as an operator would allow an intranet.
LOOPBACK_ALLOWED = ["127.0.0.1"]


@pytest.fixture(scope="module")
def web() -> Iterator[FakeWeb]:
    with FakeWeb(slow_seconds=3.0, huge_bytes=3_000_000) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with guarded_client(LOOPBACK_ALLOWED) as client:
        yield client
