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

# Webhooks: what the API answered each provider (status is the HTTP status code; provider is
# the path's /webhooks/{provider}/, "other" for a path no webhook router serves). Counted by
# api/metrics_middleware.py for every answer, refusals (401, 413, 422, 429, 503) included.
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
# Read from the database when the API's /metrics is scraped (at most every 5 s): every API
# process reports the same number, so aggregate with max(), not sum().
MESSAGES_RECEIVED = Counter(
    "leadflow_messages_received",
    "Inbound messages stored for delivery (duplicates and status events not counted), by "
    "channel and role (lead, human).",
    ["channel", "role"],
)
INBOX_BACKLOG = Gauge(
    "leadflow_inbox_backlog",
    "Acknowledged inbound messages that still wait to be delivered to Temporal.",
)

# Turns of a conversation (activities/turn_steps.py), by the activity that ends them:
# replied: the reply went out (send_and_record); escalated: a playbook rule handed the lead to a
# person; failed: handed over because the AI or the channel failed (FAILURE_RULES); silent: the
# lead's messages were recorded and not answered (do-not-contact, a human has the conversation,
# an operator stopped the turn). Turns of runs at versions 0 and 1 (before issue 8) count only
# when they escalate, fail or stay silent.
TURNS = Counter(
    "leadflow_turns",
    "Conversation turns finished, by channel and outcome (replied, escalated, failed, silent).",
    ["channel", "outcome"],
)
TURN_OUTCOMES = ("replied", "escalated", "failed", "silent")
# Escalation rules that mean "the AI or the channel failed", not "the playbook says a person
# should answer" (workflows/conversation.py hands over with these).
FAILURE_RULES = frozenset(
    {
        "ai_unavailable",
        "invalid_model_output",
        "budget_exhausted",
        "reply_blocked",
        "delivery_failed",
    }
)
TURN_SECONDS = Histogram(
    "leadflow_turn_seconds",
    "Time from the lead's first unanswered message (its provider timestamp) to the reply "
    "being sent, for replied turns; first='true' for a conversation's first turn (time to "
    "first reply).",
    ["channel", "first"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
# Counted when the escalated turn is recorded (the record step, an activity: never replayed).
# The rule is a playbook's escalation rule name or one of FAILURE_RULES.
ESCALATIONS = Counter(
    "leadflow_escalations",
    "Escalations to a person, by the rule that escalated.",
    ["rule"],
)
# Read from the database when the API's /metrics is scraped (one GROUP BY, at most every 30 s):
# every API process reports the same numbers, so aggregate with max(), not sum().
LEAD_QUALITY = Gauge(
    "leadflow_leads_by_quality",
    "Leads by their current quality (hot, warm, lukewarm, cold, unknown), over all tenants.",
    ["quality"],
)
LEAD_QUALITIES = ("hot", "warm", "lukewarm", "cold", "unknown")

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

# Circuit breakers (pybreaker) of this worker process, one series per group of breakers:
# breaker="llm:<provider>" (one breaker per provider credential) or "crm:<kind>" (one per CRM
# connection); the value is the worst state among the group's breakers (models/metrics_breakers.py).
BREAKER_STATE = Gauge(
    "leadflow_breaker_state",
    "Worst state of a group of circuit breakers: 0 closed, 1 half-open, 2 open.",
    ["breaker"],
)
BREAKER_STATE_VALUES = {"closed": 0, "half-open": 1, "half_open": 1, "open": 2}

# CRM sync saga steps, counted once per sync when its outcome is recorded: crm is the
# connection's kind (hubspot, salesforce, pipedrive, chatwoot, builtin, a plugin's), outcome
# the step's (succeeded, failed, compensated, compensation_failed, skipped).
CRM_SYNCS = Counter(
    "leadflow_crm_syncs",
    "CRM sync saga steps, by CRM and outcome.",
    ["crm", "outcome"],
)

# Enrichment rows finished, by outcome: enriched, failed (the row cannot be enriched: no
# website, a 404, robots.txt, ...), gave_up (retries exhausted; the workflow marked it failed).
# Throughput: rate(leadflow_enrichment_records_total[5m]).
ENRICHMENT_RECORDS = Counter(
    "leadflow_enrichment_records",
    "Enrichment rows finished, by outcome.",
    ["outcome"],
)
ENRICHMENT_RECORD_SECONDS = Histogram(
    "leadflow_enrichment_record_seconds",
    "Time the attempt that finished an enrichment row took (website, fetch, extract, e-mail).",
    ["outcome"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)

# Outbound messages (replies, follow-ups, holding texts, specialist alerts), per attempt that
# decided: channel is the message's (waha, whatsapp, messenger, chatwoot, email); outcome sent
# (the provider took it), stored (no channel configured: the outbox only), already_sent (a
# retry found it sent), failed (refused for good), retrying (a retryable failure; Temporal retries).
OUTBOX_SENDS = Counter(
    "leadflow_outbox_sends",
    "Outbound messages, by channel and outcome.",
    ["channel", "outcome"],
)
