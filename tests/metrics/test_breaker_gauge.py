"""`leadflow_breaker_state`: one series per group of pybreaker breakers, at their worst state."""

from __future__ import annotations

import uuid

import pybreaker
import pytest
from prometheus_client import REGISTRY

from models.metrics_breakers import BreakerGauge


def state(group: str) -> float | None:
    return REGISTRY.get_sample_value("leadflow_breaker_state", {"breaker": group})


def failing() -> None:
    raise ConnectionError("provider down")


def ok() -> str:
    return "ok"


def breaker(group: str, name: str, *, reset: float = 60.0) -> pybreaker.CircuitBreaker:
    return pybreaker.CircuitBreaker(
        fail_max=1,
        reset_timeout=reset,
        listeners=[BreakerGauge(group)],
        name=name,
        throw_new_error_on_trip=False,
    )


def test_the_group_shows_its_worst_breaker() -> None:
    group = f"llm:test-{uuid.uuid4().hex[:6]}"
    first = breaker(group, "p:key-1")
    second = breaker(group, "p:key-2")
    assert state(group) == 0  # the series exists (closed) before anything happened

    with pytest.raises(ConnectionError):
        first.call(failing)
    assert first.current_state == "open"
    assert state(group) == 2
    assert second.call(ok) == "ok"
    assert state(group) == 2  # one open breaker keeps the group open


def test_half_open_then_closed_after_a_good_trial_call() -> None:
    group = f"crm:test-{uuid.uuid4().hex[:6]}"
    cb = breaker(group, "crm:conn-1", reset=60.0)
    with pytest.raises(ConnectionError):
        cb.call(failing)
    assert state(group) == 2
    cb.half_open()
    assert state(group) == 1
    assert cb.call(ok) == "ok"
    assert state(group) == 0


def test_groups_are_independent() -> None:
    a, b = f"crm:a-{uuid.uuid4().hex[:6]}", f"crm:b-{uuid.uuid4().hex[:6]}"
    breaker_a = breaker(a, "crm:x")
    breaker(b, "crm:x")  # same breaker name, other group
    with pytest.raises(ConnectionError):
        breaker_a.call(failing)
    assert (state(a), state(b)) == (2, 0)
