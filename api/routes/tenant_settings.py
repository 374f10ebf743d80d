"""The calling tenant's channel settings: credentials, webhook secrets, specialists, playbook.
Secrets are write-only: responses show them masked. The playbook also has routes of its own:
read it as YAML, replace it, and preview the offline provider's replies under it."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlmodel.ext.asyncio.session import AsyncSession

from activities.channels.connection_check import (
    ChannelNotConfigured,
    UnknownChannel,
    check_channel,
    ensure_testable,
)
from activities.llm.offline_preview import MAX_PREVIEW_MESSAGES, preview_replies
from api.deps import AppState, CurrentTenant, Session, State, Temporal, settings_of
from api.errors import ApiError
from api.responses import errors
from models import llm_config
from models.mailbox import ensure_mailbox_reader, mailbox_status
from models.repo import tenants as tenant_repo
from models.repo.playbooks import PlaybookError, parse_playbook, playbook_for, playbook_text
from models.tables import Tenant
from models.tenant import TenantSettings, settings_report
from models.tenant_settings_merge import SettingsRejected, merge_settings
from workers.plugins import known_llm_providers

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])
log = logging.getLogger("leadflow.settings")


def _masked(settings: TenantSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json", exclude_none=True)


def _merged(
    state: AppState, tenant: Tenant, update: dict[str, Any], *, replace: bool
) -> TenantSettings:
    """The one merge (models/tenant_settings_merge.py), then the checks that need the process:
    the playbook compiles and every model chain can run."""
    try:
        new = merge_settings(
            settings_of(state, tenant),
            update,
            replace=replace,
            allowlist=state.settings.ssrf_allowlist,
        )
    except SettingsRejected as exc:
        raise ApiError(422, exc.message, exc.problems) from exc
    try:
        playbook_for(new)
    except PlaybookError as exc:
        raise ApiError(422, "invalid playbook", list(exc.errors) or [str(exc)]) from exc
    if new.llm is not None:
        problems = llm_config.config_problems(state.settings, known_llm_providers(), new.llm)
        if problems:
            raise ApiError(422, "invalid llm settings", problems)
    return new


async def _save(
    state: AppState, session: AsyncSession, tenant: Tenant, new: TenantSettings
) -> None:
    old = settings_of(state, tenant)
    await tenant_repo.save_tenant_settings(
        session,
        tenant=tenant,
        settings=new,
        secret_key=state.settings.secret_key.get_secret_value(),
    )
    await _mailbox_follows(state, tenant.id, old, new)


async def _mailbox_follows(
    state: AppState, tenant_id: str, old: TenantSettings, new: TenantSettings
) -> None:
    """The tenant's mailbox reader follows the saved settings (models/mailbox.py): started,
    told about a changed `imap` block, or stopped. A change Temporal could not take is a 503
    that says the settings are saved (saving again, or the next worker start, starts the
    reader); with the `imap` block unchanged a missing reader is started if Temporal answers."""
    changed = old.imap != new.imap
    if not changed and new.imap is None:
        return
    try:
        client = await state.temporal_client()
        await ensure_mailbox_reader(client, tenant_id=tenant_id, imap=new.imap, changed=changed)
    except Exception as exc:
        if not changed:
            log.warning("mailbox reader of %s not checked: %s", tenant_id, exc)
            return
        raise ApiError(
            503,
            "Temporal is unavailable",
            f"the settings are saved, but the mailbox reader could not follow them: {exc}; "
            "save them again, or it follows when a worker starts",
        ) from exc


@router.get("")
async def get_settings(tenant: CurrentTenant, state: State) -> dict[str, Any]:
    return _masked(settings_of(state, tenant))


@router.get("/status")
async def settings_status(tenant: CurrentTenant, state: State) -> dict[str, Any]:
    """Which channels are configured (and which required fields the others lack), and the
    channels whose webhooks are accepted unsigned."""
    return settings_report(settings_of(state, tenant))


@router.get("/mailbox", responses=errors(503))
async def get_mailbox_status(tenant: CurrentTenant, temporal: Temporal) -> dict[str, Any]:
    """The mailbox reader of the tenant's `imap` settings: connected, its state (reading,
    polling, login refused, unreachable, ...), cursor, counts and last error; `running` false
    when no reader runs."""
    status = await mailbox_status(temporal, tenant.id)
    if status is None:
        return {"running": False}
    return {"running": True, **status.model_dump(mode="json")}


class ChannelTestOut(BaseModel):
    ok: bool
    detail: str = Field(description="What was reached, or why not (never a secret).")


@router.post(
    "/channels/{channel}/test",
    responses=errors(
        404,
        409,
        _404="Not a channel: waha, whatsapp, messenger, chatwoot, smtp, imap.",
        _409="The channel is not configured (GET /api/v1/settings/status says what is missing).",
    ),
)
async def test_channel(channel: str, tenant: CurrentTenant, state: State) -> ChannelTestOut:
    """Try the channel with its stored settings: WAHA's session status, the WhatsApp Cloud API
    phone number, the Messenger page, Chatwoot's profile and account, SMTP (connect, EHLO,
    TLS, AUTH, QUIT; nothing is sent) or IMAP (LOGIN, SELECT, LOGOUT); through the URL guard,
    with short timeouts. An unreachable or refusing service is `ok: false` with the reason."""
    settings = settings_of(state, tenant)
    try:
        ensure_testable(settings, channel)
    except UnknownChannel as exc:
        raise ApiError(404, "unknown channel", str(exc)) from exc
    except ChannelNotConfigured as exc:
        raise ApiError(409, "channel not configured", str(exc)) from exc
    try:
        result = await check_channel(channel, settings, allowlist=state.settings.ssrf_allowlist)
    except Exception as exc:  # a test that breaks is an answer too, never a 500
        log.warning("channel test of %s for %s failed", channel, tenant.id, exc_info=True)
        return ChannelTestOut(ok=False, detail=f"{channel}: {type(exc).__name__}: {exc}")
    return ChannelTestOut(ok=result.ok, detail=result.detail)


@router.patch("")
async def patch_settings(
    patch: dict[str, Any], tenant: CurrentTenant, state: State, session: Session
) -> dict[str, Any]:
    """Deep-merge into the settings: `{"waha": {"session": "sales"}}` keeps WAHA's URL and
    secrets; a masked or absent secret keeps the stored one; `null` removes a block or field."""
    new = _merged(state, tenant, patch, replace=False)
    await _save(state, session, tenant, new)
    return _masked(new)


@router.put("")
async def put_settings(
    body: dict[str, Any], tenant: CurrentTenant, state: State, session: Session
) -> dict[str, Any]:
    """Replace the settings; masked secrets (as GET shows them) keep the stored ones."""
    new = _merged(state, tenant, body, replace=True)
    await _save(state, session, tenant, new)
    return _masked(new)


# ---- the playbook -------------------------------------------------------------------------

MAX_PLAYBOOK_BYTES = 256 * 1024
PLAYBOOK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


class PlaybookOut(BaseModel):
    yaml: str = Field(description="The playbook as YAML (a built-in one's shipped file).")
    hash: str = Field(description="Its content hash: what conversations record as its version.")
    source: Literal["custom", "builtin", "neutral"] = Field(
        description="The tenant's own YAML, a built-in playbook, or the neutral persona."
    )
    builtin: str | None = Field(description="The built-in playbook's name, if one is used.")


def _playbook_out(settings: TenantSettings, tenant: Tenant) -> PlaybookOut:
    try:
        text = playbook_text(settings, tenant_name=tenant.name)
    except PlaybookError as exc:  # stored before validation existed: say so, do not 500
        raise ApiError(409, "the stored playbook does not load", list(exc.errors)) from exc
    return PlaybookOut(
        yaml=text.yaml, hash=text.playbook.content_hash, source=text.source, builtin=text.builtin
    )


@router.get("/playbook", responses=errors(409))
async def get_playbook(tenant: CurrentTenant, state: State) -> PlaybookOut:
    """The playbook the tenant's conversations use, as YAML, with its hash. Quiet hours,
    escalation rules (and whom they notify: specialist roles), scoring and follow-ups live
    here; the specialists themselves and the tenant's time zone are settings
    (`GET /api/v1/settings`)."""
    return _playbook_out(settings_of(state, tenant), tenant)


async def _yaml_body(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_PLAYBOOK_BYTES:
        raise ApiError(413, "playbook too large", f"at most {MAX_PLAYBOOK_BYTES} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(422, "invalid playbook", [f"not UTF-8 text: {exc}"]) from exc


@router.put("/playbook", openapi_extra=PLAYBOOK_BODY, responses=errors(413, 422))
async def put_playbook(
    request: Request, tenant: CurrentTenant, state: State, session: Session
) -> PlaybookOut:
    """Replace the tenant's playbook with this YAML (the request body, `application/yaml` or
    `text/plain`). 422 names each problem: the line and column of a YAML error, the field path
    of an invalid value (`escalation.0.notify: ...`). Running conversations take it at their
    next turn."""
    text = await _yaml_body(request)
    try:
        parse_playbook(text)
    except PlaybookError as exc:
        raise ApiError(422, "invalid playbook", list(exc.errors)) from exc
    new = _merged(state, tenant, {"playbook_yaml": text}, replace=False)
    await _save(state, session, tenant, new)
    return _playbook_out(new, tenant)


Sample = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    yaml: str | None = Field(
        default=None,
        max_length=MAX_PLAYBOOK_BYTES,
        description="A playbook to try before saving it; default: the tenant's current one.",
    )
    messages: list[Sample] = Field(
        min_length=1,
        max_length=MAX_PREVIEW_MESSAGES,
        description="What a lead writes, one message per turn, in order.",
    )


class PreviewEscalationOut(BaseModel):
    rule: str
    reason: str
    notify: list[str] = Field(description="The specialist roles the rule notifies.")


class PreviewTurnOut(BaseModel):
    message: str
    reply: str | None = Field(description="None: the AI stays silent (handed over, closed).")
    purpose: str | None = Field(description="reply | escalation_notice")
    stage: str = Field(description="The conversation's stage after this message.")
    intent: str
    language: str
    confidence: float
    fields: dict[str, Any] = Field(description="What is known about the lead after it.")
    escalation: PreviewEscalationOut | None
    blocked: str | None = Field(description="Why the reply guard would stop the reply.")
    note: str


class PreviewOut(BaseModel):
    hash: str
    provider: Literal["offline"] = "offline"
    turns: list[PreviewTurnOut]


@router.post("/playbook/preview", responses=errors(409, 422))
async def preview_playbook(body: PreviewRequest, tenant: CurrentTenant, state: State) -> PreviewOut:
    """The offline provider's replies to sample messages under a playbook (the given YAML,
    or the current one): one turn per message of one conversation, with the stage, intent,
    fields, escalation and reply-guard verdict each turn ends with. Nothing is stored or sent;
    the tenant's knowledge and inventory are not consulted."""
    if body.yaml is not None:
        try:
            playbook = parse_playbook(body.yaml)
        except PlaybookError as exc:
            raise ApiError(422, "invalid playbook", list(exc.errors)) from exc
    else:
        try:
            playbook = playbook_for(settings_of(state, tenant), tenant_name=tenant.name)
        except PlaybookError as exc:
            raise ApiError(409, "the stored playbook does not load", list(exc.errors)) from exc
    turns = await preview_replies(playbook, body.messages)
    return PreviewOut(
        hash=playbook.content_hash,
        turns=[
            PreviewTurnOut(
                message=t.message,
                reply=t.reply,
                purpose=t.purpose,
                stage=t.stage,
                intent=t.intent,
                language=t.language,
                confidence=t.confidence,
                fields=dict(t.fields),
                escalation=PreviewEscalationOut(
                    rule=t.escalation.rule,
                    reason=t.escalation.reason,
                    notify=list(t.escalation.notify),
                )
                if t.escalation
                else None,
                blocked=t.blocked,
                note=t.note,
            )
            for t in turns
        ],
    )
