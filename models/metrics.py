"""leadflow's own Prometheus series, defined once for every process that emits them.

Each process (the API, each worker) serves its own registry on `/metrics`; Prometheus sums
over processes. Names follow Prometheus conventions (`_total` counters, `_seconds` histograms).
Label values are bounded sets (providers, channels, CRMs, steps, outcomes, models): never a
tenant id, lead id or message text, which would make the series unbounded and leak data.

Workflows never touch this module: their code is replayed, so a counter there would count
each replay. What a workflow decides is counted by the activity that acts on it.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Webhooks: what the API answered each provider (status is the HTTP status code).
WEBHOOK_ACKS = Counter(
    "leadflow_webhook_acks",
    "Webhook requests answered, by provider and HTTP status.",
    ["provider", "status"],
)
WEBHOOK_ACK_SECONDS = Histogram(
    "leadflow_webhook_ack_seconds",
    "Time from a webhook request's arrival to its answer.",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
INBOX_BACKLOG = Gauge(
    "leadflow_inbox_backlog",
    "Acknowledged inbound messages that still wait to be delivered to Temporal.",
)

# Turns of a conversation, counted once the reply went out (or the turn ended without one).
TURNS = Counter(
    "leadflow_turns",
    "Conversation turns finished, by channel and outcome (replied, escalated, silent, failed).",
    ["channel", "outcome"],
)
TURN_SECONDS = Histogram(
    "leadflow_turn_seconds",
    "Time from the lead's (first unanswered) message reaching leadflow to the reply being "
    "sent; first='true' for a conversation's first reply (time to first reply).",
    ["channel", "first"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
ESCALATIONS = Counter(
    "leadflow_escalations",
    "Escalations to a person, by the rule that escalated.",
    ["rule"],
)
LEAD_QUALITY = Gauge(
    "leadflow_leads_by_quality",
    "Leads by their current quality (hot, warm, cold, unknown), over all tenants.",
    ["quality"],
)

# Model calls: one per attempt that reached the provider.
MODEL_CALLS = Counter(
    "leadflow_model_calls",
    "Model calls, by provider, model, step and outcome (ok, error, refused).",
    ["provider", "model", "step", "outcome"],
)
MODEL_TOKENS = Counter(
    "leadflow_model_tokens",
    "Model tokens, by provider, model, step and direction (input, output).",
    ["provider", "model", "step", "direction"],
)
MODEL_COST_USD = Counter(
    "leadflow_model_cost_usd",
    "Model cost in US dollars as priced by models/pricing.py, by provider, model and step.",
    ["provider", "model", "step"],
)
MODEL_CALL_SECONDS = Histogram(
    "leadflow_model_call_seconds",
    "Duration of a model call, by provider and step.",
    ["provider", "step"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

# Circuit breakers (pybreaker): 0 closed, 1 half-open, 2 open.
BREAKER_STATE = Gauge(
    "leadflow_breaker_state",
    "State of a circuit breaker: 0 closed, 1 half-open, 2 open.",
    ["breaker"],
)
BREAKER_STATE_VALUES = {"closed": 0, "half-open": 1, "half_open": 1, "open": 2}

# CRM sync saga steps, by CRM and outcome (synced, skipped, failed, compensated).
CRM_SYNCS = Counter(
    "leadflow_crm_syncs",
    "CRM sync operations, by CRM and outcome.",
    ["crm", "outcome"],
)

# Enrichment: rows finished, by outcome (enriched, no_website, failed, skipped).
ENRICHMENT_RECORDS = Counter(
    "leadflow_enrichment_records",
    "Enrichment rows finished, by outcome.",
    ["outcome"],
)

# Outbox: messages sent to a channel, by channel and outcome (sent, failed, already_sent).
OUTBOX_SENDS = Counter(
    "leadflow_outbox_sends",
    "Outbound messages, by channel and outcome.",
    ["channel", "outcome"],
)
