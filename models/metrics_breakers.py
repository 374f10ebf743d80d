"""`leadflow_breaker_state` from pybreaker's state changes (models/metrics.py BREAKER_STATE).

A worker holds one breaker per LLM credential and one per CRM connection: labelling each would
put credential fingerprints and connection ids in the series. A group (`llm:anthropic`,
`crm:hubspot`) is one series instead, valued at the worst state of its breakers: "some
HubSpot connection is open" is what an operator acts on; which one is in `/ready` and the logs."""

from __future__ import annotations

import pybreaker

from models.metrics import BREAKER_STATE, BREAKER_STATE_VALUES

# group -> breaker name -> state value; per process, as the breakers are.
_states: dict[str, dict[str, int]] = {}


def _state_value(state: pybreaker.CircuitBreakerState | str) -> int:
    name = state if isinstance(state, str) else str(state.name)
    return BREAKER_STATE_VALUES.get(name, 0)


class BreakerGauge(pybreaker.CircuitBreakerListener):
    """A listener for every breaker of `group`; the group's series exists (0, closed) from the
    first breaker on."""

    def __init__(self, group: str) -> None:
        self.group = group
        if group not in _states:
            _states[group] = {}
            BREAKER_STATE.labels(breaker=group).set(0)

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        states = _states[self.group]
        states[str(cb.name)] = _state_value(new_state)
        BREAKER_STATE.labels(breaker=self.group).set(max(states.values()))
