"""Per-tenant channel settings: credentials, webhook secrets, specialists, playbook."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WahaSettings(_Settings):
    base_url: str = "http://localhost:3000"
    api_key: SecretStr | None = None
    session: str = "default"
    webhook_secret: SecretStr | None = Field(default=None, description="HMAC key (X-Webhook-Hmac).")


class MetaSettings(_Settings):
    """WhatsApp Cloud API and Messenger (both Graph API)."""

    graph_url: str = "https://graph.facebook.com/v21.0"
    access_token: SecretStr | None = None
    phone_number_id: str | None = None
    page_access_token: SecretStr | None = None
    app_secret: SecretStr | None = Field(default=None, description="Checks X-Hub-Signature-256.")
    verify_token: SecretStr | None = Field(default=None, description="GET hub.verify_token.")


class ChatwootSettings(_Settings):
    base_url: str = "http://localhost:3001"
    api_token: SecretStr | None = None
    account_id: int = 1
    webhook_secret: SecretStr | None = None


class SmtpSettings(_Settings):
    host: str = "localhost"
    port: int = 25
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = "leadflow@localhost"
    starttls: bool = False
    use_tls: bool = False


class ImapSettings(_Settings):
    """A mailbox the leads' e-mail replies arrive in, read by a durable mailbox reader
    (workflows/mailbox.py): IMAP IDLE where the server has it, polling otherwise."""

    host: str = "localhost"
    port: int = Field(default=993, description="993 with use_tls, 143 otherwise.")
    username: str | None = None
    password: SecretStr | None = None
    use_tls: bool = Field(default=True, description="IMAP over TLS (IMAPS).")
    mailbox: str = "INBOX"
    poll_seconds: int = Field(
        default=60, ge=5, le=3600, description="How often to look when the server has no IDLE."
    )
    enabled: bool = Field(default=True, description="False stops the reader, keeping the rest.")


class InboundEmailSettings(_Settings):
    """Inbound-parse webhooks of e-mail providers (`/webhooks/{mailgun,sendgrid,postmark}/…`)."""

    mailgun_signing_key: SecretStr | None = Field(
        default=None, description="Mailgun's HTTP webhook signing key (HMAC-SHA256 of the token)."
    )
    basic_auth_password: SecretStr | None = Field(
        default=None,
        description="SendGrid and Postmark sign nothing: their webhook URL carries HTTP basic "
        "auth with this password (any user name).",
    )


class Specialist(_Settings):
    name: str
    role: str = Field(description="Matched against the playbook's escalation `notify` roles.")
    whatsapp: str | None = Field(
        default=None, description="Phone or chat id, sent through WAHA/Meta."
    )
    email: str | None = None
    chatwoot_agent_id: int | None = None


class TenantLlmSettings(_Settings):
    """The tenant's own model choice and keys; unset values fall back to the process settings
    (`LEADFLOW_LLM_*`). Chains are 'provider[:model],provider[:model],...' in failover order."""

    provider: str | None = Field(default=None, description="The provider of every step.")
    model: str | None = None
    analysis: str | None = Field(default=None, description="Chain of the analysis step.")
    reply: str | None = Field(default=None, description="Chain of the reply step.")
    email: str | None = Field(default=None, description="Chain of enrichment e-mails.")
    anthropic_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    openai_compatible_base_url: str | None = None
    openai_compatible_api_key: SecretStr | None = None
    daily_budget_usd: float | None = Field(
        default=None, ge=0, description="No model calls once the day's spend reaches this."
    )


class TenantSettings(_Settings):
    playbook: str | None = Field(
        default=None,
        description="A built-in playbook by name; none: a neutral persona from the tenant's name.",
    )
    playbook_yaml: str | None = Field(
        default=None, description="A custom playbook, overrides `playbook`."
    )
    waha: WahaSettings | None = None
    whatsapp: MetaSettings | None = None
    messenger: MetaSettings | None = None
    chatwoot: ChatwootSettings | None = None
    smtp: SmtpSettings | None = None
    imap: ImapSettings | None = None
    inbound_email: InboundEmailSettings | None = None
    specialists: list[Specialist] = Field(default_factory=list)
    group_chats_enabled: bool = False
    timezone: str = "UTC"
    llm: TenantLlmSettings | None = None
    enrichment_respect_robots: bool = Field(
        default=True, description="Enrichment fetches obey robots.txt; turn off only with consent."
    )
    allow_unsigned_webhooks: bool = Field(
        default=False,
        description="A channel without a webhook secret accepts unsigned webhooks only when this "
        "is true (anyone who knows the URL can then post as a lead): for demos and local tests.",
    )


# What a channel needs before it can send. A block with any of these unset is present but not
# configured: the channel is not used, and `tenant show` / GET /api/v1/settings/status say why.
REQUIRED_CHANNEL_FIELDS: dict[str, tuple[str, ...]] = {
    "waha": ("base_url", "api_key"),
    "whatsapp": ("graph_url", "access_token", "phone_number_id"),
    "messenger": ("graph_url", "page_access_token"),
    "chatwoot": ("base_url", "api_token"),
    "smtp": ("host", "from_address"),
}

# The secret that signs each channel's webhooks (None: that channel's webhooks are unsigned).
WEBHOOK_SECRET_FIELDS: dict[str, str] = {
    "waha": "webhook_secret",
    "whatsapp": "app_secret",
    "messenger": "app_secret",
    "chatwoot": "webhook_secret",
}


def missing_channel_fields(settings: TenantSettings) -> dict[str, list[str]]:
    """Each channel block that is present, with the required fields it lacks (empty: configured)."""
    found: dict[str, list[str]] = {}
    for channel, fields in REQUIRED_CHANNEL_FIELDS.items():
        block = getattr(settings, channel)
        if block is None:
            continue
        found[channel] = [name for name in fields if _blank(getattr(block, name))]
    return found


def channel_configured(settings: TenantSettings, channel: str) -> bool:
    """Present with every required field set: the one definition of "configured"."""
    return missing_channel_fields(settings).get(channel) == []


def unsigned_webhook_channels(settings: TenantSettings) -> list[str]:
    """The channels whose webhooks this tenant accepts without a signature (none unless
    `allow_unsigned_webhooks`)."""
    if not settings.allow_unsigned_webhooks:
        return []
    unsigned: list[str] = []
    for channel, field in WEBHOOK_SECRET_FIELDS.items():
        block = getattr(settings, channel)
        if block is None or _blank(getattr(block, field)):
            unsigned.append(channel)
    return unsigned


def _blank(value: object) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value is None or (isinstance(value, str) and not value.strip())


def dump_settings(settings: TenantSettings) -> dict[str, object]:
    """Serialise with secrets in clear text, for storage only (never for API responses)."""

    def reveal(value: object) -> object:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [reveal(v) for v in value]
        return value

    raw = reveal(settings.model_dump(mode="python", exclude_none=True))
    assert isinstance(raw, dict)
    return raw


def unsigned_webhook_warning(settings: TenantSettings) -> str | None:
    """The warning `/ready` and `tenant show` give for a tenant that accepts unsigned webhooks."""
    channels = unsigned_webhook_channels(settings)
    if not channels:
        return None
    return (
        f"accepts unsigned webhooks on {', '.join(channels)} (allow_unsigned_webhooks is on): "
        "anyone who knows the URL can post as a lead; set the webhook secrets and turn it off"
    )


def settings_report(settings: TenantSettings) -> dict[str, Any]:
    """Channel readiness and warnings, as `GET /api/v1/settings/status` and `tenant show` say."""
    missing = missing_channel_fields(settings)
    warnings = [
        f"{channel} is not configured: {', '.join(fields)} missing"
        for channel, fields in missing.items()
        if fields
    ]
    unsigned = unsigned_webhook_warning(settings)
    if unsigned:
        warnings.append(unsigned)
    return {
        "channels": {
            channel: {"configured": not fields, "missing": fields}
            for channel, fields in missing.items()
        },
        "unsigned_webhooks": unsigned_webhook_channels(settings),
        "warnings": warnings,
    }
