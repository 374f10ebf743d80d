"""Timeouts and retry policies, named once: every activity call in a workflow uses these."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# One attempt walks the step's whole failover chain (each request has its own timeout, a
# repair may double a link), so the attempt's timeout leaves room for a few links.
LLM_TIMEOUT = timedelta(seconds=180)
# Perceive and draft the reply in one activity: two steps' chains.
DRAFT_TIMEOUT = 2 * LLM_TIMEOUT
# Bounded: a provider that stays down hands the lead to a human (with the holding reply) after
# about a minute of attempts, instead of keeping them waiting for hours.
LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=6,
    non_retryable_error_types=[
        "UnknownLlmProvider",
        "InvalidLlmOutput",
        "LlmRequestRejected",
        "LlmBudgetExhausted",
        "UnknownTenant",
        "InvalidPlaybook",
    ],
)

SEND_TIMEOUT = timedelta(seconds=30)
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=20,
    non_retryable_error_types=["ChannelRejected", "ChannelNotConfigured", "TenantNotFound"],
)

NOTIFY_TIMEOUT = timedelta(seconds=30)
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
    non_retryable_error_types=["ChannelRejected", "ChannelNotConfigured"],
)

STORE_TIMEOUT = timedelta(seconds=15)
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["UnknownTenant", "InvalidPlaybook", "CredentialsError"],
)

CRM_REQUEST_TIMEOUT = timedelta(seconds=15)
CRM_REQUEST_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
)
