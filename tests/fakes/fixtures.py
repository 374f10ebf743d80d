"""Pytest fixtures for the fakes, function-scoped (each test gets fresh, empty servers).

Use them from a test module or a conftest with

    from tests.fakes.fixtures import *  # noqa: F403

or as a plugin: `pytest_plugins = ["tests.fakes.fixtures"]` in a conftest.py at the test root.
The fixtures are sync, so they work from sync and async tests alike."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.meta import FakeMeta
from tests.fakes.smtp import SmtpServer
from tests.fakes.waha import FakeWaha

__all__ = ["fake_chatwoot", "fake_meta", "fake_waha", "smtp_server"]


@pytest.fixture
def fake_waha() -> Iterator[FakeWaha]:
    """A started FakeWaha; `fake_waha.settings()` gives matching `WahaSettings`."""
    with FakeWaha() as waha:
        yield waha


@pytest.fixture
def fake_chatwoot() -> Iterator[FakeChatwoot]:
    """A started FakeChatwoot; `fake_chatwoot.settings()` gives matching `ChatwootSettings`."""
    with FakeChatwoot() as chatwoot:
        yield chatwoot


@pytest.fixture
def fake_meta() -> Iterator[FakeMeta]:
    """A started FakeMeta; `.whatsapp_settings()` / `.messenger_settings()` give `MetaSettings`."""
    with FakeMeta() as meta:
        yield meta


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A started aiosmtpd server without auth; `smtp_server.settings()` gives `SmtpSettings`.
    For AUTH, build your own: `with SmtpServer(username="u", password="p") as smtp: ...`."""
    with SmtpServer() as smtp:
        yield smtp
