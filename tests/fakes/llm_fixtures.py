"""Pytest fixtures for the fake model servers, function-scoped (each test gets fresh servers with
an empty script and no brain).

Use them as a plugin: add "tests.fakes.llm_fixtures" to `pytest_plugins` in tests/conftest.py,
or import them into a test module: `from tests.fakes.llm_fixtures import fake_anthropic`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.llm import FakeAnthropic, FakeOpenAI

__all__ = ["fake_anthropic", "fake_openai"]


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A started FakeAnthropic: `base_url=fake_anthropic.url`, `api_key=fake_anthropic.api_key`."""
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started FakeOpenAI: `base_url=fake_openai.base_url` (…/v1), `api_key=fake_openai.api_key`.
    For an OpenAI-compatible server without auth, build `FakeOpenAI(api_key=None)` yourself."""
    with FakeOpenAI() as fake:
        yield fake
