"""The one settings class of leadflow: every knob is an environment variable `LEADFLOW_*`."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from limits import RateLimitItem, parse_many
from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def rate_limit_items(value: str) -> list[RateLimitItem]:
    """A rate limit setting in the `limits` notation, several separated by `;` or `,`
    (`20/second;1200/minute`); empty: no limit. A ValueError says what is wrong."""
    if not value.strip():
        return []
    try:
        items = parse_many(value)
    except ValueError as exc:
        raise ValueError(
            f"{exc}: expected e.g. '1200/minute' or '20/second;1200/minute' (empty: no limit)"
        ) from None
    if any(item.amount < 1 for item in items):
        raise ValueError(f"{value!r}: a limit of 0 refuses everything; leave it empty for none")
    return items


def _valid_rate_limits(value: str) -> str:
    rate_limit_items(value)
    return value


RateLimitSetting = Annotated[str, AfterValidator(_valid_rate_limits)]

# Published in this source: what it encrypts anyone can decrypt. Accepted in development mode only.
PUBLISHED_SECRET_KEY = "leadflow-dev-secret-change-me"  # noqa: S105 - published on purpose
# The key `leadflow up` generates in the data dir (workers/secret_key.py).
SECRET_KEY_FILE = "secret.key"  # noqa: S105 - a file name
# What `leadflow up` generates beside it: the keys of Temporal payloads (models/payload_codec.py)
# and the token of the codec endpoint (api/routes/codec.py).
PAYLOAD_KEYS_FILE = "payload.keys"
CODEC_TOKEN_FILE = "codec.token"  # noqa: S105 - a file name


# Where `.env` and the default data dir `.leadflow/` are: LEADFLOW_HOME, which `./leadflow` sets
# to its checkout (it runs every command in the caller's directory, so that file arguments are
# where the user is, and keeps the checkout's configuration and state); unset, the current
# directory (the installed `leadflow`, containers). Read once, before any Settings exists.
LEADFLOW_HOME = Path(os.environ.get("LEADFLOW_HOME") or ".")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LEADFLOW_", env_file=LEADFLOW_HOME / ".env", extra="ignore"
    )

    data_dir: Path = Field(
        default=LEADFLOW_HOME / ".leadflow",
        description="Where the embedded defaults keep their files (SQLite, Temporal dev server).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; defaults to a SQLite file in the data dir. "
        "Use postgresql+psycopg://user:pass@host/db for PostgreSQL.",
    )

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_grpc_compression: Literal["auto", "gzip", "none"] = Field(
        default="auto",
        description="gRPC compression between leadflow and Temporal. auto: none when "
        "temporal_address is on this machine (loopback: compressing costs CPU on both ends "
        "and saves nothing), gzip otherwise (a cluster or Temporal Cloud across a network).",
    )
    temporal_ui_port: int = 8233

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str | None = Field(
        default=None, description="Base URL webhooks are reachable under (printed by `up`)."
    )

    # The agent's models (see models/llm_config.py for how a step's chain is resolved).
    llm_provider: str = Field(
        default="offline",
        description="offline | anthropic | openai | openai_compatible (or a plugin's provider): "
        "the provider of every step unless a step names its own chain.",
    )
    llm_model: str | None = Field(
        default=None, description="The model of llm_provider for every step (else its default)."
    )
    llm_analysis: str | None = Field(
        default=None,
        description="Failover chain of the analysis step, e.g. "
        "'anthropic:claude-haiku-4-5,openai:gpt-4.1-mini' (a fast, cheap model).",
    )
    llm_reply: str | None = Field(
        default=None,
        description="Failover chain of the reply step, e.g. "
        "'anthropic:claude-sonnet-4-5,openai:gpt-4.1' (a stronger model).",
    )
    llm_email: str | None = Field(
        default=None, description="Failover chain of enrichment e-mails (default: llm_reply)."
    )
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_compatible_base_url: str | None = Field(
        default=None, description="Ollama, vLLM, LM Studio, OpenRouter: e.g. http://host:11434/v1"
    )
    openai_compatible_api_key: SecretStr | None = None
    openai_compatible_structured: Literal["json_schema", "json_object", "tools"] = Field(
        default="json_schema",
        description="How an OpenAI-compatible server is asked for structured output.",
    )
    llm_timeout_seconds: float = Field(
        default=30.0, description="Per model request; Temporal retries the activity."
    )
    llm_max_output_tokens: int = 1024
    llm_breaker_fail_max: int = Field(
        default=5, description="Consecutive failures that open a provider's circuit breaker."
    )
    llm_breaker_reset_seconds: float = Field(
        default=30.0, description="How long an open breaker waits before one trial call."
    )
    llm_prices: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='Price overrides, USD per million tokens, as JSON: {"provider:model": '
        '{"input": 3, "output": 15, "cached_input": 0.3, "cache_write": 3.75}}; '
        '"provider:prefix*" and "provider:*" are wildcards. Merged over the built-in list prices.',
    )
    llm_daily_budget_usd: float | None = Field(
        default=None,
        ge=0,
        description="Default daily LLM budget per tenant in USD (UTC days); a tenant's "
        "llm.daily_budget_usd overrides it. Unset: unlimited.",
    )

    secret_key: SecretStr = Field(
        default=SecretStr(PUBLISHED_SECRET_KEY),
        description="Key material for encrypting stored credentials; several keys separated by "
        "commas for a rotation (the first encrypts, all decrypt; `leadflow secrets rotate`). "
        "Unset: <data dir>/secret.key when it exists (`leadflow up` generates it), else the "
        "published default, which `leadflow api` and `leadflow worker` refuse unless dev_mode.",
    )
    dev_mode: bool = Field(
        default=False,
        description="Development mode: `leadflow api` and `leadflow worker` accept the "
        "published default secret key (anyone can decrypt what it encrypted).",
    )

    payload_keys: SecretStr | None = Field(
        default=None,
        description="Keys that encrypt every Temporal payload (AES-256-GCM): 32 bytes each in "
        "base64 or hex, comma-separated; the first encrypts, all decrypt (rotation: "
        "`leadflow secrets payload-rotate`). Unset: <data dir>/payload.keys when it exists "
        "(`leadflow up` generates it); without any, `leadflow api` and `leadflow worker` refuse "
        "to start unless dev_mode (payloads then stay plain text).",
    )
    codec_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the codec endpoint (/codec/encode, /codec/decode) through "
        "which the Temporal UI and CLI decode payloads; it is deployment-wide, tenant API keys "
        "are not accepted. Unset: <data dir>/codec.token when it exists (`leadflow up` "
        "generates it); without one the endpoint answers 403.",
    )
    codec_cors_origins: list[str] | None = Field(
        default=None,
        description="Browser origins (the Temporal UI) allowed to call the codec endpoint. "
        "Unset: http://127.0.0.1:<temporal_ui_port> and http://localhost:<temporal_ui_port>.",
    )

    debounce_seconds: float = Field(
        default=2.0, description="Quiet time after a lead's last message before a turn starts."
    )
    conversation_history_limit: int = Field(
        default=2000, description="History events after which a conversation continues as new."
    )
    max_webhook_bytes: int = 1_000_000
    webhook_ack_budget_seconds: float = Field(
        default=0.03,
        ge=0,
        description="How long a webhook answer waits for Temporal. The message is stored in the "
        "inbox before that; when Temporal takes longer (a burst, a restart), the webhook is "
        "answered 202 queued and the API delivers it in the background.",
    )

    # Rate limits (api/rate_limits.py), counted in each API process's memory.
    rate_limit_api: RateLimitSetting = Field(
        default="1200/minute",
        description="Requests per API key under /api/v1/ (e.g. '20/second;1200/minute'; empty: "
        "no limit). Over it: 429 with Retry-After. Each API process counts on its own.",
    )
    rate_limit_webhooks: RateLimitSetting = Field(
        default="400/second;12000/minute",
        description="Webhooks per tenant under /webhooks/ (all providers together; empty: no "
        "limit). Over it: 429 with Retry-After, nothing accepted or started (the provider sends "
        "it again). Each API process counts on its own.",
    )
    rate_limit_auth_failures: RateLimitSetting = Field(
        default="30/minute",
        description="Requests with a missing or invalid API key (401) per client address under "
        "/api/v1/; over it, that address's requests with keys not seen working are answered "
        "429 (empty: no limit).",
    )

    background_niceness: int = Field(
        default=10,
        ge=0,
        le=19,
        description="How many steps below the API's CPU priority `leadflow up` runs the Temporal "
        "dev server and the worker processes (the niceness they add, as `nice -n`): under "
        "overload a webhook's acknowledgement gets the CPU first and their work waits, durably, "
        "in Temporal. 0 runs them at the API's priority.",
    )

    # Enrichment jobs
    max_csv_bytes: int = 20_000_000
    max_csv_rows: int = 100_000
    enrichment_default_concurrency: int = 20
    enrichment_max_concurrency: int = 200
    enrichment_records_per_run: int = 500
    fetch_timeout_seconds: float = 10.0
    fetch_max_bytes: int = 2_000_000
    fetch_per_host_concurrency: int = 4
    fetch_cache_ttl_seconds: int = 7 * 24 * 3600
    ssrf_allowlist: list[str] = Field(
        default_factory=list,
        description="Hosts or CIDRs that tenant-supplied URLs (websites, CRM and channel base "
        "URLs) may reach although they are private or loopback (intranet systems, a local WAHA). "
        "Empty by default; `leadflow up` allows loopback unless this is set.",
    )
    search_provider: str = "duckduckgo"
    duckduckgo_url: str = "https://html.duckduckgo.com/html/"

    # Knowledge and inventory (issue 12): the database by default; Weaviate when a URL is set.
    weaviate_url: str | None = Field(
        default=None,
        description="Weaviate's REST URL (http://weaviate:8080). Set: documents and inventory "
        "are searched there (hybrid BM25 + vectors, one multi-tenant collection); an "
        "unreachable Weaviate is an error, never a fallback to the database. Unset: the "
        "database's full-text search and SQL filters.",
    )
    weaviate_api_key: SecretStr | None = Field(default=None, description="Weaviate API key.")
    weaviate_grpc_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Weaviate's gRPC port on the same host (default 50051).",
    )
    weaviate_collection: str = Field(
        default="LeadflowKnowledge",
        pattern=r"^[A-Z][A-Za-z0-9_]{0,99}$",
        description="The one collection all tenants share (one Weaviate tenant each).",
    )
    weaviate_vectors: Literal["provider", "module", "none"] = Field(
        default="provider",
        description="provider: leadflow embeds with the tenant's model provider's embeddings "
        "API (OpenAI-compatible; tenants whose provider has none are searched by BM25 alone); "
        "module: Weaviate's vectorizer module (LEADFLOW_WEAVIATE_VECTORIZER) embeds; none: BM25.",
    )
    weaviate_vectorizer: str = Field(
        default="text2vec-openai",
        description="The vectorizer module when LEADFLOW_WEAVIATE_VECTORS=module.",
    )
    weaviate_embedding_model: str = Field(
        default="text-embedding-3-small",
        description="The embeddings model asked of the tenant's provider when "
        "LEADFLOW_WEAVIATE_VECTORS=provider (an OpenAI-compatible server's own model name, "
        "e.g. nomic-embed-text on Ollama).",
    )
    weaviate_alpha: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Hybrid search weight: 0 = BM25 only, 1 = vectors only.",
    )
    inventory_every_minutes: int = Field(
        default=10,
        ge=1,
        le=7 * 24 * 60,
        description="How often a new inventory source is fetched unless it says otherwise.",
    )

    # Workers
    # Per worker process (bench/README.md has the measurements). Model calls wait on the network,
    # so activity slots are many; workflow tasks are CPU, a few in flight keep one core busy.
    worker_max_concurrent_activities: int = 100
    worker_max_concurrent_workflow_tasks: int = 50
    worker_max_cached_workflows: int = Field(
        default=1000,
        ge=0,
        description="Conversations kept in the worker's memory between their turns (Temporal's "
        "sticky cache); the others are replayed from history on their next turn. Bounds the "
        "worker's memory however many conversations are open.",
    )
    worker_deployment_name: str | None = Field(
        default=None,
        description="Temporal Worker Deployment the workers poll as (with "
        "LEADFLOW_WORKER_BUILD_ID); unset: unversioned workers. workers/versioning.py, "
        "docs/upgrades.md.",
    )
    worker_build_id: str | None = Field(
        default=None,
        description="This build's id in the Worker Deployment (e.g. the image tag or git sha).",
    )
    workflow_sandbox: Literal["strict", "passthrough", "off"] = Field(
        default="passthrough",
        description="How workflow code is sandboxed. strict: every module a workflow imports "
        "outside a known-safe list is re-imported per run; passthrough: modules are shared "
        "with the worker, the sandbox still refuses non-deterministic calls (datetime.now, "
        "random, I/O) at run time; off: no sandbox (fastest; nothing stops a "
        "non-deterministic call). The test suite replays every recorded history under strict. "
        "Measured costs are in bench/README.md.",
    )
    worker_metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Port of a worker process's Prometheus `/metrics` (leadflow's series and "
        "the Temporal SDK's); 0: none. `leadflow up` gives worker i this port + i - 1.",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the worker's `/metrics` listens on (0.0.0.0 in a container).",
    )
    otel_enabled: bool = Field(
        default=False,
        description="Trace API calls, workflows and activities with OpenTelemetry "
        "(Temporal's TracingInterceptor).",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector, e.g. http://otel-collector:4318; "
        "unset: spans go to the log (console exporter).",
    )
    otel_service_name: str = "leadflow"
    log_format: Literal["json", "text"] | None = Field(
        default=None,
        description="json: one JSON object per log line (for log shippers); text: readable "
        "lines. Unset: text for `leadflow up` and the workers it starts, json for `leadflow "
        "api` and `leadflow worker` (workers/logs.py).",
    )

    @model_validator(mode="after")
    def _key_of_the_data_dir(self) -> Settings:
        """Without LEADFLOW_SECRET_KEY every command (tenant, crm, api, worker) uses the key
        `up` generated for the same data dir: what one encrypts, the others can decrypt."""
        if "secret_key" not in self.model_fields_set:
            try:
                key = (self.data_dir / SECRET_KEY_FILE).read_text().strip()
            except OSError:  # none yet, or not ours to read
                return self
            if key:
                self.secret_key = SecretStr(key)
        return self

    @model_validator(mode="after")
    def _payload_keys_of_the_data_dir(self) -> Settings:
        """Without LEADFLOW_PAYLOAD_KEYS / LEADFLOW_CODEC_TOKEN every command uses what `up`
        generated for the same data dir: the API, the workers and the CLI read each other's
        payloads, and the Temporal UI's codec calls are answered."""
        for field, name in (("payload_keys", PAYLOAD_KEYS_FILE), ("codec_token", CODEC_TOKEN_FILE)):
            if field in self.model_fields_set:
                continue
            try:
                value = (self.data_dir / name).read_text().strip()
            except OSError:  # none yet, or not ours to read
                continue
            if value:
                setattr(self, field, SecretStr(value))
        return self

    @property
    def resolved_codec_cors_origins(self) -> list[str]:
        if self.codec_cors_origins is not None:
            return self.codec_cors_origins
        port = self.temporal_ui_port
        return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'leadflow.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
