"""`leadflow eval FILE.jsonl`: score the agent on a labelled set through the real path.

Every labelled turn of every case is sent as a real WAHA webhook to a running leadflow
(`POST /webhooks/waha/{tenant}`), and what the conversation did is read back through the API
(`GET /api/v1/conversations/{id}`: the analysis call's output, escalations, replies, the model
calls of the ledger). So the figures cover the webhook parser, the workflow's debounce and
policy, the agent with the tenant's configured models, the reply guard and the ledger — what a
lead would get — not a unit under test. `workers.eval_metrics` scores the observations.

Tenants: without `--api-key` the command works next to the leadflow it evaluates: it creates
(or reuses) one tenant per playbook, `eval-<playbook>` (dashes for underscores), in the database
of the local settings (LEADFLOW_DATABASE_URL / the data dir, like `leadflow tenant create`),
sets its playbook and models and issues a key. With `--api-key` it evaluates that tenant as it is
(e.g. a remote leadflow): the cases whose playbook is the tenant's playbook run, or, with
`--only-playbook NAME`, the cases of NAME (for a tenant with a custom playbook).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from models.agent import FieldValue
from models.common import Intent, Role, Stage
from workers.eval_metrics import (
    EvalCase,
    EvalReport,
    EvalSetError,
    TurnLabel,
    TurnObservation,
    compute_report,
    format_report,
    load_cases,
)
from workers.fake_waha import message_event, webhook_headers

DEFAULT_API_URL = "http://127.0.0.1:8000"
POLL_SECONDS = 0.25
# Workers cache a tenant's settings this long (models.playbook_service.PlaybookResolver): after
# changing the models of a reused eval tenant, the first cases would otherwise run on the old ones.
WORKER_SETTINGS_CACHE_SECONDS = 5.0
EVAL_TENANT_PREFIX = "eval-"
WAHA_ME = "10000000000@c.us"  # the business number the events are addressed to

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class EvalFailure(Exception):
    """A problem the user can act on; printed without a traceback. Code 2: bad input."""

    def __init__(self, message: str, *, hint: str | None = None, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


# ---- the API ---------------------------------------------------------------------------------


class EvalApi:
    """The calls the command makes, with transport and API errors turned into `EvalFailure`."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self, method: str, path: str, *, api_key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        try:
            return await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.ConnectError as exc:
            raise EvalFailure(
                f"cannot reach the leadflow API at {self.base_url} ({exc})",
                hint="start it with `leadflow up` (or `leadflow api` + `leadflow worker`), "
                "or pass --api-url",
            ) from exc
        except httpx.TimeoutException as exc:
            raise EvalFailure(
                f"the leadflow API at {self.base_url} did not answer in time"
            ) from exc
        except httpx.HTTPError as exc:
            raise EvalFailure(
                f"talking to the leadflow API at {self.base_url} failed: {exc}"
            ) from exc

    async def check_reachable(self) -> None:
        response = await self.request("GET", "/health")
        if response.status_code != 200:
            raise EvalFailure(
                f"{self.base_url}/health answered {response.status_code}: is this a leadflow API?"
            )

    async def tenant_settings(self, api_key: str) -> dict[str, Any]:
        response = await self.request("GET", "/api/v1/settings", api_key=api_key)
        if response.status_code == 401:
            raise EvalFailure(f"the API at {self.base_url} refused the key: {_error_of(response)}")
        return _json_object(response, "GET /api/v1/settings")

    async def post_waha(self, tenant_id: str, body: bytes, headers: dict[str, str]) -> str:
        """Post one message event; returns the conversation id the API delivered it to."""
        path = f"/webhooks/waha/{quote(tenant_id, safe='')}"
        response = await self.request("POST", path, content=body, headers=headers)
        if response.status_code == 401:
            raise EvalFailure(
                f"the webhook of tenant {tenant_id} refused the message: {_error_of(response)}",
                hint="the tenant checks WAHA signatures: pass its secret with --webhook-secret",
            )
        ack = _json_object(response, f"POST {path}")
        delivered = ack.get("delivered") or []
        if ack.get("status") != "accepted" or not delivered:
            raise EvalFailure(f"the webhook ignored the eval message: {ack.get('ignored') or ack}")
        return str(delivered[0]["workflow_id"])

    async def conversation(self, api_key: str, conversation_id: str) -> dict[str, Any] | None:
        """The conversation's detail, or None while its first turn is not recorded yet."""
        path = f"/api/v1/conversations/{quote(conversation_id, safe=':@')}"
        response = await self.request("GET", path, api_key=api_key)
        if response.status_code == 404:
            return None
        return _json_object(response, f"GET {path}")


def _error_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        text = str(body.get("error") or body)
        return f"{text} ({body['detail']})" if body.get("detail") else text
    return str(body)


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        raise EvalFailure(f"{what} answered {response.status_code}: {_error_of(response)}")
    try:
        body = response.json()
    except ValueError as exc:
        raise EvalFailure(f"{what} answered with something that is not JSON") from exc
    if not isinstance(body, dict):
        raise EvalFailure(f"{what} answered with an unexpected body: {str(body)[:200]}")
    return body


def waha_message_event(*, contact: str, text: str, message_id: str, now: float) -> dict[str, Any]:
    """An inbound WAHA `message` event (../shared/wire/waha.md §1-2), as WAHA posts it."""
    return message_event(
        from_=contact,
        body=text,
        message_id=message_id,
        timestamp=int(now),
        me=WAHA_ME,
        metadata={"source": "leadflow eval"},
    )


def signed_headers(body: bytes, secret: str | None) -> dict[str, str]:
    """The headers WAHA sends with the event, HMAC-signed with the tenant's secret if any."""
    return webhook_headers(body, secret)


# ---- tenants ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalTarget:
    """Where the cases of one playbook go."""

    tenant_id: str
    api_key: str
    webhook_secret: str | None = None


def eval_tenant_id(playbook: str) -> str:
    from models.repo.tenants import slugify

    return slugify(f"{EVAL_TENANT_PREFIX}{playbook}")


def _eval_models(provider: str | None, model: str | None) -> tuple[str | None, str | None]:
    """The provider and model to store on the eval tenants; (None, None) = the process's own.
    Whether they can run is decided by models/llm_config.py, as for any tenant."""
    if provider is None and model is None:
        return None, None
    return (provider.strip().lower() if provider else None), model


async def prepare_local_tenants(
    playbooks: Sequence[str], *, provider: str | None, model: str | None
) -> tuple[dict[str, EvalTarget], bool]:
    """Create or update `eval-<playbook>` tenants in the local database and issue a key each.

    Returns the targets and whether an existing tenant's settings changed (so workers may still
    hold the old ones for a few seconds)."""
    from pydantic import ValidationError

    from models import llm_config
    from models.db import Database, migrate
    from models.repo import tenants as tenant_repo
    from models.repo.playbooks import PlaybookError, playbook_for
    from models.settings import Settings
    from models.tenant import TenantSettings, dump_settings
    from workers.plugins import known_llm_providers

    try:
        settings = Settings()
    except ValidationError as exc:
        raise EvalFailure(f"invalid LEADFLOW_* settings: {exc}") from exc
    llm_provider, llm_model = _eval_models(provider, model)
    for playbook in playbooks:  # refuse an unknown playbook before anything is written
        try:
            playbook_for(TenantSettings(playbook=playbook))
        except PlaybookError as exc:
            raise EvalFailure(f"a case names playbook {playbook!r}: {exc}") from exc
    secret = settings.secret_key.get_secret_value()
    url = settings.resolved_database_url
    try:
        await asyncio.to_thread(migrate, url)
    except Exception as exc:
        raise EvalFailure(f"cannot open the local database {_safe_url(url)}: {exc}") from exc
    db = Database(url)
    targets: dict[str, EvalTarget] = {}
    changed = False
    try:
        async with db.session() as session:
            for playbook in playbooks:
                tenant_id = eval_tenant_id(playbook)
                row = await tenant_repo.get_tenant(session, tenant_id=tenant_id)
                current = (
                    tenant_repo.tenant_settings(row, secret_key=secret) if row else TenantSettings()
                )
                # Keep what an operator configured (keys, base URLs); set only what the eval owns.
                stored = dump_settings(current)
                llm = stored.get("llm")
                try:
                    wanted = TenantSettings.model_validate(
                        {
                            **stored,
                            "playbook": playbook,
                            "playbook_yaml": None,
                            # The eval posts its dialogues to the local stack unsigned unless
                            # the operator gave its WAHA a webhook secret (then they are signed).
                            "allow_unsigned_webhooks": True,
                            "llm": {
                                **(llm if isinstance(llm, dict) else {}),
                                "provider": llm_provider,
                                "model": llm_model,
                            },
                        }
                    )
                    playbook_for(wanted)
                except (ValidationError, PlaybookError) as exc:
                    raise EvalFailure(f"playbook {playbook!r}: {exc}") from exc
                if wanted.llm is not None:
                    # The same check as the settings API: no worker could run these models.
                    problems = llm_config.config_problems(
                        settings, known_llm_providers(), wanted.llm
                    )
                    if problems:
                        raise EvalFailure("invalid model settings: " + "; ".join(problems))
                if row is None:
                    await tenant_repo.create_tenant(
                        session,
                        tenant_id=tenant_id,
                        name=f"Eval: {playbook}",
                        secret_key=secret,
                        settings=wanted,
                    )
                elif wanted != current:
                    await tenant_repo.save_tenant_settings(
                        session, tenant=row, settings=wanted, secret_key=secret
                    )
                    changed = True
                key = await tenant_repo.create_api_key(session, tenant_id=tenant_id)
                webhook_secret = (
                    wanted.waha.webhook_secret.get_secret_value()
                    if wanted.waha and wanted.waha.webhook_secret
                    else None
                )
                targets[playbook] = EvalTarget(tenant_id, key, webhook_secret)
    finally:
        await db.dispose()
    return targets, changed


def _safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(the configured database)"


# ---- one case ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What the conversation looked like before a turn was sent."""

    stage: str | None = None
    turns: int = 0
    transcript: int = 0
    escalations: int = 0
    calls: int = 0

    @classmethod
    def of(cls, detail: dict[str, Any] | None) -> Snapshot:
        if detail is None:
            return cls()
        return cls(
            stage=detail.get("stage"),
            turns=int(detail.get("turns") or 0),
            transcript=len(detail.get("transcript") or []),
            escalations=len(detail.get("escalations") or []),
            calls=len(detail.get("agent_calls") or []),
        )

    @property
    def silent(self) -> bool:
        """The AI does not answer: the conversation is with a human, or closed."""
        return self.stage in (Stage.HUMAN_HANDOFF.value, Stage.CLOSED.value)


def _analysis_of(detail: dict[str, Any], turn: int) -> dict[str, Any] | None:
    found = None
    for call in detail.get("agent_calls") or []:
        output = call.get("output")
        if (
            call.get("step") == "analysis"
            and isinstance(output, dict)
            and output.get("turn") == turn
        ):
            found = output
    return found


def turn_done(detail: dict[str, Any] | None, before: Snapshot) -> bool:
    """Whether the turn sent after `before` is finished (see the module's `eval` help)."""
    if detail is None:
        return False
    new = (detail.get("transcript") or [])[before.transcript :]
    roles = [str(entry.get("role")) for entry in new]
    if Role.LEAD.value not in roles:
        return False
    if before.silent:
        return True  # recorded for the human (or the closed conversation), no answer expected
    in_handoff = detail.get("stage") == Stage.HUMAN_HANDOFF.value
    if _analysis_of(detail, before.turns + 1) is not None:
        after_lead = roles[roles.index(Role.LEAD.value) + 1 :]
        answered = any(r in (Role.AI.value, Role.SYSTEM.value) for r in after_lead)
        return answered or in_handoff
    # No analysis: the AI failed for good and the turn went to a human.
    return in_handoff and len(detail.get("escalations") or []) > before.escalations


@dataclass(frozen=True)
class TurnResult:
    label: TurnLabel
    observation: TurnObservation
    perceived: bool
    timed_out: bool = False
    calls: tuple[dict[str, Any], ...] = ()


def not_perceived(case_id: str, turn: int, **kw: Any) -> TurnObservation:
    """An observation of a turn no model read (with a human, closed, failed or timed out)."""
    return TurnObservation(case_id=case_id, turn=turn, intent=None, **kw)


def observe(
    case_id: str,
    turn: int,
    label: TurnLabel,
    detail: dict[str, Any] | None,
    before: Snapshot,
    *,
    latency_ms: float | None,
    timed_out: bool = False,
) -> TurnResult:
    """Turn the conversation's detail after a turn into the metrics' observation of it."""
    calls = tuple((detail or {}).get("agent_calls") or [])[before.calls :]
    usage: dict[str, Any] = {
        "model_calls": len(calls),
        "input_tokens": sum(int(c.get("input_tokens") or 0) for c in calls),
        "output_tokens": sum(int(c.get("output_tokens") or 0) for c in calls),
        "cached_tokens": sum(int(c.get("cached_tokens") or 0) for c in calls),
        "cost_usd": sum(float(c.get("cost_usd") or 0.0) for c in calls),
        "latency_ms": latency_ms,
    }
    guard = any(
        c.get("step") == "reply" and isinstance(c.get("output"), dict) and c["output"].get("guard")
        for c in calls
    )
    escalations = (detail or {}).get("escalations") or []
    new_escalation = len(escalations) > before.escalations
    in_handoff_before = before.stage == Stage.HUMAN_HANDOFF.value
    escalated = new_escalation or in_handoff_before
    rule = str(escalations[-1].get("rule")) if escalated and escalations else None
    analysis = (
        _analysis_of(detail, before.turns + 1) if detail is not None and not before.silent else None
    )
    intent = _intent(analysis.get("intent")) if analysis else None
    if analysis is None or intent is None:
        observation = not_perceived(
            case_id, turn, escalated=escalated, rule=rule, guard_blocked=guard, **usage
        )
        return TurnResult(label, observation, False, timed_out, calls)
    secondary = tuple(
        i for i in (_intent(v) for v in analysis.get("secondary") or []) if i is not None
    )
    raw_fields = analysis.get("fields")
    fields: dict[str, FieldValue] = (
        {k: v for k, v in raw_fields.items() if isinstance(v, str | int | float | bool)}
        if isinstance(raw_fields, dict)
        else {}
    )
    observation = TurnObservation(
        case_id=case_id,
        turn=turn,
        intent=intent,
        secondary=secondary,
        escalated=escalated,
        rule=rule,
        fields=fields,
        guard_blocked=guard,
        **usage,
    )
    return TurnResult(label, observation, True, timed_out, calls)


def _intent(value: Any) -> Intent | None:
    try:
        return Intent(str(value))
    except ValueError:
        return None


@dataclass
class RunState:
    """Shared by the running cases: counts for the progress line."""

    turns_done: int = 0
    escalations: int = 0
    timed_out: int = 0


async def run_case(
    api: EvalApi,
    target: EvalTarget,
    case: EvalCase,
    contact: str,
    *,
    turn_timeout: float,
    on_turn: Callable[[TurnResult], None],
) -> list[TurnResult]:
    """Send the case's turns one after the other, each once the previous one is done."""
    loop = asyncio.get_running_loop()
    results: list[TurnResult] = []
    detail: dict[str, Any] | None = None
    for number, label in enumerate(case.turns, start=1):
        if results and results[-1].timed_out:
            # The conversation is in an unknown state: the rest of the case is not measured.
            skipped = TurnResult(label, not_perceived(case.id, number), False, True)
            results.append(skipped)
            on_turn(skipped)
            continue
        before = Snapshot.of(detail)
        now = time.time()
        body = json.dumps(
            waha_message_event(
                contact=contact,
                text=label.text,
                message_id=f"false_{contact}_{secrets.token_hex(16).upper()}",
                now=now,
            )
        ).encode()
        started = loop.time()
        conversation_id = await api.post_waha(
            target.tenant_id, body, signed_headers(body, target.webhook_secret)
        )
        deadline = started + turn_timeout
        done = False
        while True:
            detail = await api.conversation(target.api_key, conversation_id) or detail
            if turn_done(detail, before):
                done = True
                break
            if loop.time() >= deadline:
                break
            await asyncio.sleep(POLL_SECONDS)
        latency = (loop.time() - started) * 1000 if done else None
        result = observe(
            case.id, number, label, detail, before, latency_ms=latency, timed_out=not done
        )
        results.append(result)
        on_turn(result)
    return results


# ---- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    min_intent: float = 0.0
    min_escalation_recall: float = 0.0
    min_field_f1: float = 0.0

    def failures(self, report: EvalReport) -> list[str]:
        out = []
        for name, value, minimum in (
            ("intent accuracy", report.intent_accuracy, self.min_intent),
            ("escalation recall", report.escalation_recall, self.min_escalation_recall),
            ("field F1", report.field_f1, self.min_field_f1),
        ):
            if value < minimum:
                option = {
                    "intent accuracy": "--min-intent",
                    "escalation recall": "--min-escalation-recall",
                    "field F1": "--min-field-f1",
                }[name]
                out.append(f"{name} {value:.3f} is below {option} {minimum:.3f}")
        return out


@dataclass
class EvalRun:
    cases: list[EvalCase]
    results: list[TurnResult]
    targets: dict[str, EvalTarget]
    report: EvalReport
    models: list[dict[str, Any]] = field(default_factory=list)


def select_cases(
    cases: Sequence[EvalCase], *, only_playbook: str | None, limit: int | None
) -> list[EvalCase]:
    chosen = [c for c in cases if only_playbook is None or c.playbook == only_playbook]
    return chosen[:limit] if limit is not None else chosen


def models_used(results: Sequence[TurnResult]) -> list[dict[str, Any]]:
    """Which provider and model answered each step, from the ledger rows of the run."""
    ok: Counter[tuple[str, str, str]] = Counter()
    failed: Counter[tuple[str, str, str]] = Counter()
    for result in results:
        for call in result.calls:
            key = (str(call.get("step")), str(call.get("provider")), str(call.get("model")))
            if call.get("outcome") in ("ok", "repaired"):
                ok[key] += 1
            else:
                failed[key] += 1
    return [
        {"step": s, "provider": p, "model": m, "calls": ok[(s, p, m)], "failed": failed[(s, p, m)]}
        for s, p, m in sorted(set(ok) | set(failed))
    ]


async def run_eval(
    cases: list[EvalCase],
    *,
    api_url: str,
    api_key: str | None,
    tenant: str | None,
    webhook_secret: str | None,
    provider: str | None,
    model: str | None,
    only_playbook: str | None,
    limit: int | None,
    concurrency: int,
    turn_timeout: float,
) -> EvalRun:
    api = EvalApi(api_url)
    try:
        await api.check_reachable()
        if api_key is not None:
            remote = await api.tenant_settings(api_key)
            playbook = only_playbook or remote.get("playbook")
            if not playbook:
                raise EvalFailure(
                    "the tenant of --api-key has no built-in playbook (a custom one, or none)",
                    hint="choose the cases to run with --only-playbook NAME",
                )
            chosen = select_cases(cases, only_playbook=str(playbook), limit=limit)
            if not chosen:
                raise EvalFailure(
                    f"no case of the file uses the tenant's playbook {playbook!r}",
                    hint="choose the cases to run with --only-playbook NAME",
                )
            tenant_id = tenant or await _tenant_id_of(api, api_key)
            targets = {str(playbook): EvalTarget(tenant_id, api_key, webhook_secret)}
        else:
            chosen = select_cases(cases, only_playbook=only_playbook, limit=limit)
            if not chosen:
                raise EvalFailure(f"no case of the file uses the playbook {only_playbook!r}")
            playbooks = sorted({c.playbook for c in chosen})
            targets, changed = await prepare_local_tenants(
                playbooks, provider=provider, model=model
            )
            for target in targets.values():
                try:
                    await api.tenant_settings(target.api_key)
                except EvalFailure as exc:
                    raise EvalFailure(
                        f"the API at {api.base_url} does not know the eval tenant "
                        f"{target.tenant_id} just made in the local database ({exc.message})",
                        hint="run the command with the API's database settings "
                        "(LEADFLOW_DATABASE_URL), or pass --api-key for a remote leadflow",
                    ) from exc
            if changed:
                console.print(
                    f"eval tenant settings changed; waiting {WORKER_SETTINGS_CACHE_SECONDS:.0f}s "
                    "for the workers to pick them up"
                )
                await asyncio.sleep(WORKER_SETTINGS_CACHE_SECONDS)
        results = await _run_cases(
            api, chosen, targets, concurrency=concurrency, turn_timeout=turn_timeout
        )
    finally:
        await api.aclose()
    report = compute_report([(r.label, r.observation) for r in results])
    return EvalRun(chosen, results, targets, report, models_used(results))


async def _tenant_id_of(api: EvalApi, api_key: str) -> str:
    """The key's tenant, named in the ids of its conversations (the API has no "who am I")."""
    response = await api.request(
        "GET", "/api/v1/conversations", api_key=api_key, params={"limit": 1}
    )
    body = _json_object(response, "GET /api/v1/conversations")
    for conv in body.get("conversations") or []:
        parts = str(conv.get("id", "")).split(":")
        if len(parts) >= 3 and parts[0] == "conv":
            return parts[1]
    raise EvalFailure(
        "cannot tell the tenant id of --api-key (the tenant has no conversation yet)",
        hint="pass it with --tenant",
    )


async def _run_cases(
    api: EvalApi,
    cases: list[EvalCase],
    targets: dict[str, EvalTarget],
    *,
    concurrency: int,
    turn_timeout: float,
) -> list[TurnResult]:
    run_token = f"{secrets.randbelow(10**9):09d}"
    total_turns = sum(len(c.turns) for c in cases)
    state = RunState()
    limiter = asyncio.Semaphore(concurrency)
    with Progress(
        TextColumn("[bold]eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("turns · {task.fields[stats]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("eval", total=total_turns, stats="")

        def on_turn(result: TurnResult) -> None:
            state.turns_done += 1
            state.escalations += result.observation.escalated
            state.timed_out += result.timed_out
            stats = f"{state.escalations} escalated"
            if state.timed_out:
                stats += f" · [red]{state.timed_out} timed out[/]"
            progress.update(task, completed=state.turns_done, stats=stats)

        async def one(index: int, case: EvalCase) -> list[TurnResult]:
            # A contact of its own per case and run: no state leaks between cases or runs.
            contact = f"99{run_token}{index:05d}@c.us"
            async with limiter:
                return await run_case(
                    api,
                    targets[case.playbook] if case.playbook in targets else _only(targets),
                    case,
                    contact,
                    turn_timeout=turn_timeout,
                    on_turn=on_turn,
                )

        tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(cases)]
        try:
            per_case = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    return [r for results in per_case for r in results]


def _only(targets: dict[str, EvalTarget]) -> EvalTarget:
    # With --api-key and --only-playbook every selected case goes to the one tenant.
    return next(iter(targets.values()))


# ---- output ------------------------------------------------------------------------------------


def report_json(
    run: EvalRun, *, file: Path, api_url: str, thresholds: Thresholds
) -> dict[str, Any]:
    data = run.report.as_dict()
    data.update(
        file=str(file),
        api_url=api_url,
        cases=len(run.cases),
        tenants={playbook: t.tenant_id for playbook, t in run.targets.items()},
        models=run.models,
        timed_out_turns=[
            f"{r.observation.case_id}#{r.observation.turn}" for r in run.results if r.timed_out
        ],
        thresholds={
            "min_intent": thresholds.min_intent,
            "min_escalation_recall": thresholds.min_escalation_recall,
            "min_field_f1": thresholds.min_field_f1,
        },
        failed_thresholds=thresholds.failures(run.report),
        observations=[
            {
                "case_id": r.observation.case_id,
                "turn": r.observation.turn,
                "text": r.label.text,
                "expected_intent": r.label.intent.value,
                "intent": r.observation.intent.value if r.observation.intent else None,
                "secondary": [i.value for i in r.observation.secondary],
                "expected_escalate": r.label.escalate,
                "escalated": r.observation.escalated,
                "rule": r.observation.rule,
                "fields": dict(r.observation.fields),
                "guard_blocked": r.observation.guard_blocked,
                "model_calls": r.observation.model_calls,
                "latency_ms": r.observation.latency_ms,
                "timed_out": r.timed_out,
            }
            for r in run.results
        ],
    )
    return data


def _models_line(models: list[dict[str, Any]]) -> str:
    if not models:
        return "models used: none (no model call was recorded)"
    parts = []
    for m in models:
        text = f"{m['step']} {m['provider']}:{m['model']}: {m['calls']} calls"
        if m["failed"]:
            text += f" ({m['failed']} failed)"
        parts.append(text)
    return "models used: " + "; ".join(parts)


# ---- the command -------------------------------------------------------------------------------


def eval_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="The labelled set: JSON lines, one case per line (format: evals/README.md).",
            show_default=False,
        ),
    ],
    api_url: Annotated[
        str,
        typer.Option(
            "--api-url",
            envvar="LEADFLOW_API_URL",
            help="Base URL of the running leadflow API the webhooks are posted to.",
        ),
    ] = DEFAULT_API_URL,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="Evaluate this tenant as it is (e.g. on a remote leadflow): only the cases of its "
            "playbook run (or those of --only-playbook). Without it, eval tenants "
            "eval-<playbook> are created or reused in the local database (LEADFLOW_DATABASE_URL).",
            show_default=False,
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            help="The tenant id of --api-key (its webhook path); default: read from the ids of "
            "its conversations.",
            show_default=False,
        ),
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            "--webhook-secret",
            help="The WAHA webhook secret of the --api-key tenant, if it checks signatures.",
            show_default=False,
        ),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            help="LLM provider of the eval tenants (offline, anthropic, openai, "
            "openai_compatible or a plugin's); default: the workers' LEADFLOW_LLM_* settings.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model of --provider (default: the provider's default; for openai_compatible "
            "LEADFLOW_LLM_MODEL).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Cases in flight at once.")
    ] = 8,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=1.0,
            help="Seconds one turn may take (webhook to answer) before it counts as timed out.",
        ),
    ] = 60.0,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Also write the report, the models used and every observation to this file.",
            show_default=False,
        ),
    ] = None,
    min_intent: Annotated[
        float,
        typer.Option("--min-intent", min=0.0, max=1.0, help="Exit 1 below this intent accuracy."),
    ] = 0.0,
    min_escalation_recall: Annotated[
        float,
        typer.Option(
            "--min-escalation-recall", min=0.0, max=1.0, help="Exit 1 below this escalation recall."
        ),
    ] = 0.0,
    min_field_f1: Annotated[
        float,
        typer.Option("--min-field-f1", min=0.0, max=1.0, help="Exit 1 below this field F1."),
    ] = 0.0,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", min=1, help="Run only the first N (selected) cases.", show_default=False
        ),
    ] = None,
    only_playbook: Annotated[
        str | None,
        typer.Option(
            "--only-playbook",
            help="Run only the cases of this playbook (with --api-key: run them against that "
            "tenant whatever its playbook).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Evaluate the agent on a labelled set through a running leadflow (help: EVAL_HELP)."""
    try:
        code = _main(
            file=file,
            api_url=api_url,
            api_key=api_key,
            tenant=tenant,
            webhook_secret=webhook_secret,
            provider=provider,
            model=model,
            concurrency=concurrency,
            timeout=timeout,
            json_out=json_out,
            thresholds=Thresholds(min_intent, min_escalation_recall, min_field_f1),
            limit=limit,
            only_playbook=only_playbook,
        )
    except KeyboardInterrupt:
        err_console.print("interrupted; no report")
        raise typer.Exit(130) from None
    except EvalFailure as failure:
        # Text, not markup: messages may contain brackets.
        err_console.print(Text("error: ", style="red") + Text(failure.message), highlight=False)
        if failure.hint:
            err_console.print(Text(f"hint: {failure.hint}"), highlight=False)
        raise typer.Exit(failure.code) from None
    raise typer.Exit(code)


def _main(
    *,
    file: Path,
    api_url: str,
    api_key: str | None,
    tenant: str | None,
    webhook_secret: str | None,
    provider: str | None,
    model: str | None,
    concurrency: int,
    timeout: float,
    json_out: Path | None,
    thresholds: Thresholds,
    limit: int | None,
    only_playbook: str | None,
) -> int:
    if api_key is None and (tenant or webhook_secret):
        raise EvalFailure("--tenant and --webhook-secret go with --api-key")
    if api_key is not None and (provider or model):
        raise EvalFailure(
            "--provider/--model change the eval tenants' models; with --api-key the tenant is "
            "evaluated as it is (set its models with PATCH /api/v1/settings)"
        )
    try:
        cases = load_cases(file)
    except EvalSetError as exc:
        raise EvalFailure(str(exc)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalFailure(f"cannot read {file}: {exc}") from exc
    if not cases:
        raise EvalFailure(f"{file} holds no case")

    run = asyncio.run(
        run_eval(
            cases,
            api_url=api_url,
            api_key=api_key,
            tenant=tenant,
            webhook_secret=webhook_secret,
            provider=provider,
            model=model,
            only_playbook=only_playbook,
            limit=limit,
            concurrency=concurrency,
            turn_timeout=timeout,
        )
    )
    turns = sum(len(c.turns) for c in run.cases)
    tenants = ", ".join(sorted({t.tenant_id for t in run.targets.values()}))
    console.print(f"\n{len(run.cases)} cases, {turns} turns, tenant(s) {tenants}", highlight=False)
    console.print(Text(format_report(run.report)), highlight=False)
    console.print(Text(_models_line(run.models)), highlight=False)
    if json_out is not None:
        json_out.write_text(
            json.dumps(
                report_json(run, file=file, api_url=api_url, thresholds=thresholds),
                indent=2,
                ensure_ascii=False,
                default=str,
            )
            + "\n",
            encoding="utf-8",
        )
        console.print(f"report written to {json_out}", highlight=False)
    code = 0
    timed_out = [r for r in run.results if r.timed_out]
    if timed_out:
        shown = ", ".join(f"{r.observation.case_id}#{r.observation.turn}" for r in timed_out[:10])
        err_console.print(
            Text(
                f"{len(timed_out)} turn(s) not done within --timeout {timeout:g}s: {shown}",
                style="red",
            ),
            highlight=False,
        )
        code = 1
    for failure in thresholds.failures(run.report):
        err_console.print(Text(f"FAILED: {failure}", style="red"), highlight=False)
        code = 1
    return code


EVAL_HELP = (
    "Evaluate the agent on a labelled set (e.g. evals/dev.jsonl) through a RUNNING leadflow: "
    "real webhooks in, the outcome read back through the API.\n\n"
    "Each case gets a new WhatsApp contact. Its turns are sent in order as WAHA webhooks "
    "(POST /webhooks/waha/{tenant}); after each one the conversation is polled "
    "(GET /api/v1/conversations/{id}) until the turn is done. Observed per turn: the intent, "
    "secondary intents and fields the analysis perceived, whether the conversation escalated "
    "and by which rule, whether the reply guard blocked a reply, and the model calls, tokens, "
    "cost and latency. Prints a progress bar, the report and the provider/model that "
    "answered.\n\n"
    "Tenants: without --api-key, one tenant per playbook, eval-<playbook>, is created or reused "
    "in the database of the local LEADFLOW_* settings (so run it next to the leadflow it "
    "evaluates), with that playbook and the --provider/--model (else the workers' own "
    "LEADFLOW_LLM_* models), and a new API key. With --api-key, that tenant is evaluated as it "
    "is, on the cases of its playbook (or of --only-playbook).\n\n"
    "Exit codes: 0 done; 1 a --min-* threshold is not met, or a turn timed out; 2 bad input "
    "(an unreadable file, a line that does not validate, an unreachable API, a refused key)."
)


def register(app: typer.Typer) -> None:
    app.command("eval", help=EVAL_HELP)(eval_command)


__all__ = [
    "EvalApi",
    "EvalFailure",
    "Snapshot",
    "Thresholds",
    "observe",
    "register",
    "run_eval",
    "turn_done",
    "waha_message_event",
]
