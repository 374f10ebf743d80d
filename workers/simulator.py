"""The lead simulator behind `leadflow simulate`: synthetic leads through a running leadflow.

Leads start open loop at `rate` new leads per second (`schedule_open_loop`: lead i starts at
t0 + i/rate whatever the earlier ones are doing). Each lead is a new WhatsApp contact that plays
one dialogue: it posts its first message as a signed WAHA webhook, waits for the AI's reply to
arrive at the fake WAHA (workers/fake_waha.py), reads its conversation through the API to see
whether it was handed to a human, thinks, and sends the next message, until the dialogue ends,
the lead is escalated (the AI is silent from then on) or a reply does not come within the timeout.

What is counted, per lead message:
- time to reply: from just before the webhook POST to the reply's arrival at the fake WAHA;
- answered: a first reply within the timeout; lost: none within the timeout (the lead stops
  there, its conversation's state unknown; a reply after that is `late`);
- duplicates: every further reply to the same message, i.e. before the lead's next message;
- escalations: the conversation, read after the reply, has an escalation (or is in
  `human_handoff`); replies after that (a holding message) are `after_handoff`, not duplicates.

`pct` and `schedule_open_loop` are also the benchmark's (bench/loadgen.py)."""

from __future__ import annotations

import asyncio
import json
import math
import random
import secrets
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.common import Role, Stage
from workers.fake_waha import SentText, signed_message

# ---- open loop and percentiles ------------------------------------------------------------------


def pct(values: Iterable[float], p: float) -> float | None:
    """Nearest-rank percentile, rounded to 2 decimals (None for no values)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 2)


async def schedule_open_loop(
    count: int, rate: float, start: Callable[[int], Coroutine[Any, Any, None]]
) -> None:
    """Run `start(i)` for i in range(count), each started at t0 + i/rate (open loop: a slow
    system does not slow the arrivals down), and wait for all of them. Cancelling this cancels
    those started."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    tasks: list[asyncio.Task[None]] = []
    try:
        for i in range(count):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(start(i)))
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# ---- dialogues -----------------------------------------------------------------------------------


class DialogueError(ValueError):
    """A dialogue file that cannot be used; the message names the file and the line or entry."""


class Dialogue(BaseModel):
    """What one lead says, in order; each message is sent after the reply to the previous one."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str = Field(min_length=1)
    turns: tuple[str, ...] = Field(min_length=1)

    @field_validator("turns", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        # A turn is its text, or a mapping with a `text` (so eval sets, evals/*.jsonl, play too).
        if isinstance(value, list):
            return [t.get("text") if isinstance(t, dict) else t for t in value]
        return value

    @field_validator("turns")
    @classmethod
    def _not_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for number, text in enumerate(value, start=1):
            if not text.strip():
                raise ValueError(f"turn {number} is blank")
        return value


DEFAULT_DIALOGUES: tuple[Dialogue, ...] = (
    Dialogue(
        name="test-drive",
        turns=(
            "Hi! Do you still have the Volkswagen Golf from your website?",
            "Nice. Could I come by for a test drive on Saturday morning?",
            "Great, see you Saturday!",
        ),
    ),
    Dialogue(
        name="lease-nl",
        turns=(
            "Hallo, ik zoek een zuinige hatchback tot 20.000 euro",
            "Kan ik die ook private leasen? Wat zou dat per maand kosten?",
        ),
    ),
    Dialogue(
        name="trade-in",
        turns=(
            "Good afternoon, I'm looking for an SUV",
            "I'd like to trade in my current car, a 2015 Toyota Auris. What would you give for it?",
        ),
    ),
    Dialogue(
        name="angry-lead",
        turns=(
            "Hello, I bought a car from you two weeks ago",
            "The engine light is on again and nobody called me back. This is unacceptable, "
            "I want my money back!",
            "Hello?? Is anyone there?",
        ),
    ),
)

DIALOGUE_FORMAT = (
    "A dialogue file is YAML (.yaml, .yml) or JSON lines (any other name). YAML: a list of "
    "dialogues, or a mapping with a `dialogues:` list; each dialogue has a `name` and its "
    "`turns`, the lead's messages in order:\n\n"
    "  dialogues:\n"
    "    - name: test-drive\n"
    "      turns:\n"
    "        - Hi! Do you still have the Golf?\n"
    "        - Can I come for a test drive on Saturday?\n\n"
    'JSON lines: one dialogue per line, {"name": "test-drive", "turns": ["Hi!", "..."]}; '
    "blank lines and lines starting with // are skipped. A turn may also be a mapping with a "
    "`text` (`id` stands in for `name`), so an eval set such as evals/dev.jsonl plays as "
    "dialogues. Leads take the dialogues in turn (lead i plays dialogue i mod n)."
)


def _dialogue(data: Any, where: str) -> Dialogue:
    if isinstance(data, dict) and "name" not in data and "id" in data:
        data = {**data, "name": str(data["id"])}
    try:
        return Dialogue.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(dialogue)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise DialogueError(f"{where}: {problems}") from exc


def load_dialogues(path: Path) -> list[Dialogue]:
    """The dialogues of a YAML or JSON-lines file (DIALOGUE_FORMAT); DialogueError if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DialogueError(f"cannot read {path}: {exc}") from exc
    dialogues: list[Dialogue] = []
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DialogueError(f"{path.name} is not valid YAML: {exc}") from exc
        if isinstance(data, dict) and "dialogues" in data:
            data = data["dialogues"]
        if not isinstance(data, list):
            raise DialogueError(f"{path.name}: expected a list of dialogues (or `dialogues:`)")
        for number, item in enumerate(data, start=1):
            dialogues.append(_dialogue(item, f"{path.name}: dialogue {number}"))
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("//"):
                continue
            where = f"{path.name}:{number}"
            try:
                data = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise DialogueError(f"{where}: not JSON: {exc.msg} (column {exc.colno})") from exc
            dialogues.append(_dialogue(data, where))
    if not dialogues:
        raise DialogueError(f"{path.name} holds no dialogue")
    return dialogues


# ---- talking to leadflow -------------------------------------------------------------------------


class SimulationError(Exception):
    """A problem the user can act on; the command prints it without a traceback."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


NOT_RUNNING_HINT = "start it with `leadflow up` (or pass --api-url)"


class LeadflowApi:
    """The calls the simulator makes on a running leadflow."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, limits=limits, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def check_running(self) -> None:
        """One clear error when nothing (or not leadflow) answers at the URL."""
        try:
            response = await self._http.get("/health")
        except httpx.HTTPError as exc:
            raise SimulationError(
                f"leadflow is not running at {self.base_url} ({type(exc).__name__})",
                hint=NOT_RUNNING_HINT,
            ) from exc
        if response.status_code != 200:
            raise SimulationError(
                f"{self.base_url}/health answered {response.status_code}: is this leadflow?",
                hint=NOT_RUNNING_HINT,
            )

    async def check_key(self, api_key: str, tenant_id: str) -> None:
        """The API knows the tenant just prepared in the local database."""
        try:
            response = await self._http.get(
                "/api/v1/settings", headers={"Authorization": f"Bearer {api_key}"}
            )
        except httpx.HTTPError as exc:
            raise SimulationError(f"the leadflow API at {self.base_url} failed: {exc}") from exc
        if response.status_code != 200:
            raise SimulationError(
                f"the API at {self.base_url} does not know tenant {tenant_id} of the local "
                f"database (GET /api/v1/settings answered {response.status_code})",
                hint="run simulate with the API's database settings (LEADFLOW_DATABASE_URL / "
                "LEADFLOW_DATA_DIR) or point --api-url at the leadflow of this database",
            )

    async def post_webhook(self, tenant_id: str, raw: bytes, headers: dict[str, str]) -> str:
        """Post one WAHA event; returns the conversation id it was delivered to."""
        path = f"/webhooks/waha/{quote(tenant_id, safe='')}"
        response = await self._http.post(path, content=raw, headers=headers)
        if response.status_code >= 300:
            detail = response.text.strip()[:300]
            raise WebhookRefused(f"POST {path} answered {response.status_code}: {detail}")
        ack = response.json()
        delivered = ack.get("delivered") if isinstance(ack, dict) else None
        if not delivered:
            raise WebhookRefused(f"POST {path} ignored the message: {ack}")
        return str(delivered[0]["workflow_id"])

    async def conversation(self, api_key: str, conversation_id: str) -> dict[str, Any] | None:
        path = f"/api/v1/conversations/{quote(conversation_id, safe=':@')}"
        response = await self._http.get(path, headers={"Authorization": f"Bearer {api_key}"})
        if response.status_code == 404:
            return None
        response.raise_for_status()
        body = response.json()
        return body if isinstance(body, dict) else None


class WebhookRefused(Exception):
    """The webhook did not accept a lead message (non-2xx, or nothing delivered)."""


@dataclass(frozen=True)
class Target:
    """The tenant the leads write to."""

    tenant_id: str
    api_key: str
    webhook_secret: str | None


# ---- the run -------------------------------------------------------------------------------------

RECORD_WAIT_SECONDS = 10.0
"""How long to wait for a replied turn to show in the conversation API before reading its
escalations from what is there (the reply is sent before the turn is recorded)."""
RECORD_POLL_SECONDS = 0.1


@dataclass
class Message:
    """One lead message and what came back."""

    turn: int
    text: str
    sent_at: float  # time.monotonic() just before the webhook POST
    ack_ms: float | None = None
    replies: list[SentText] = field(default_factory=list)
    error: str | None = None
    lost: bool = False
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def reply_ms(self) -> float | None:
        if not self.replies or self.lost:
            return None
        return (self.replies[0].received_at - self.sent_at) * 1000


@dataclass
class Lead:
    index: int
    contact: str
    dialogue: Dialogue
    conversation_id: str | None = None
    messages: list[Message] = field(default_factory=list)
    escalated: bool = False
    rule: str | None = None
    finished: bool = False
    late: int = 0  # replies to a message already counted lost
    after_handoff: int = 0  # replies after the lead was escalated (holding messages)


@dataclass
class Simulation:
    """One run: `leads` leads started at `rate`/s, their dialogues and what came back."""

    api: LeadflowApi
    target: Target
    dialogues: Sequence[Dialogue]
    leads: int
    rate: float
    think_time: float = 2.0
    timeout: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    run_id: str = field(default_factory=lambda: f"{secrets.randbelow(10**8):08d}")
    state: list[Lead] = field(default_factory=list)
    other_replies: int = 0  # to no lead message of this run (specialists' alerts)
    started_at: float = 0.0
    finished_at: float = 0.0
    _by_contact: dict[str, Lead] = field(default_factory=dict)

    # -- replies (called by the fake WAHA, in this event loop) --------------------------------
    def on_send(self, sent: SentText) -> None:
        lead = self._by_contact.get(sent.chat_id)
        if lead is None or not lead.messages:
            self.other_replies += 1
        elif lead.escalated:
            lead.after_handoff += 1
        else:
            message = lead.messages[-1]
            if message.lost:
                lead.late += 1
            else:
                message.replies.append(sent)
                message.answered.set()

    # -- leads -------------------------------------------------------------------------------
    async def run(self) -> None:
        self.state = [
            Lead(i, self._contact(i), self.dialogues[i % len(self.dialogues)])
            for i in range(self.leads)
        ]
        self._by_contact = {lead.contact: lead for lead in self.state}
        self.started_at = time.monotonic()
        try:
            await schedule_open_loop(self.leads, self.rate, lambda i: self._play(self.state[i]))
        finally:
            self.finished_at = time.monotonic()

    def _contact(self, index: int) -> str:
        # A contact of its own per lead and run, so reruns never write into old conversations:
        # 1 + 8 digits of the run + 6 of the lead = 15 digits, E.164's maximum.
        return f"1{self.run_id}{index:06d}@c.us"

    def _think(self) -> float:
        return self.think_time * self.rng.uniform(0.5, 1.5) if self.think_time > 0 else 0.0

    async def _play(self, lead: Lead) -> None:
        try:
            for turn, text in enumerate(lead.dialogue.turns, start=1):
                if turn > 1:
                    await asyncio.sleep(self._think())
                if not await self._send(lead, turn, text):
                    return
                if await self._escalated(lead):
                    lead.escalated = True
                    return
        finally:
            lead.finished = True

    async def _send(self, lead: Lead, turn: int, text: str) -> bool:
        """Send one message and wait for its reply; False when the lead cannot go on."""
        raw, headers = signed_message(
            from_=lead.contact,
            body=text,
            hmac_key=self.target.webhook_secret,
            metadata={"source": "leadflow simulate"},
        )
        message = Message(turn, text, time.monotonic())
        lead.messages.append(message)
        try:
            lead.conversation_id = await self.api.post_webhook(self.target.tenant_id, raw, headers)
        except (httpx.HTTPError, WebhookRefused, ValueError) as exc:
            message.error = str(exc) or type(exc).__name__
            return False
        message.ack_ms = (time.monotonic() - message.sent_at) * 1000
        remaining = message.sent_at + self.timeout - time.monotonic()
        if not message.answered.is_set():  # the reply may come before the acknowledgement
            try:
                await asyncio.wait_for(message.answered.wait(), max(remaining, 0.0))
            except TimeoutError:
                message.lost = True
                return False
        return True

    async def _escalated(self, lead: Lead) -> bool:
        """Whether the lead's conversation went to a human with the turn just answered."""
        if lead.conversation_id is None:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECORD_WAIT_SECONDS
        sent = len(lead.messages)
        while True:
            try:
                detail = await self.api.conversation(self.target.api_key, lead.conversation_id)
            except (httpx.HTTPError, ValueError):
                detail = None
            if detail is not None and (_recorded(detail, sent) or loop.time() > deadline):
                escalations = detail.get("escalations") or []
                if escalations:
                    lead.rule = str(escalations[-1].get("rule"))
                return bool(escalations) or detail.get("stage") == Stage.HUMAN_HANDOFF.value
            if loop.time() > deadline:
                return False
            await asyncio.sleep(RECORD_POLL_SECONDS)

    # -- figures -----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        messages = [m for lead in self.state for m in lead.messages]
        return {
            "leads_started": sum(1 for lead in self.state if lead.messages),
            "leads_finished": sum(1 for lead in self.state if lead.finished),
            "sent": len(messages),
            "answered": sum(1 for m in messages if m.replies and not m.lost),
            "waiting": sum(1 for m in messages if not m.replies and not m.lost and not m.error),
            "escalated": sum(1 for lead in self.state if lead.escalated),
            "lost": sum(1 for m in messages if m.lost),
            "duplicates": sum(max(0, len(m.replies) - 1) for m in messages),
            "errors": sum(1 for m in messages if m.error),
        }

    def summary(self) -> dict[str, Any]:
        counts = self.counts()
        messages = [m for lead in self.state for m in lead.messages]
        reply_ms = [ms for m in messages if (ms := m.reply_ms) is not None]
        acks = [m.ack_ms for m in messages if m.ack_ms is not None]
        duration = max(0.0, self.finished_at - self.started_at)
        rules: dict[str, int] = {}
        for lead in self.state:
            if lead.escalated:
                rules[lead.rule or "?"] = rules.get(lead.rule or "?", 0) + 1
        return {
            "tenant": self.target.tenant_id,
            "run_id": self.run_id,
            "leads": self.leads,
            "leads_started": counts["leads_started"],
            "rate_per_s": self.rate,
            "think_time_s": self.think_time,
            "timeout_s": self.timeout,
            "duration_s": round(duration, 2),
            "messages_sent": counts["sent"],
            "answered": counts["answered"],
            "time_to_reply_ms": {
                "p50": pct(reply_ms, 50),
                "p99": pct(reply_ms, 99),
                "max": pct(reply_ms, 100),
            },
            "ack_ms": {"p50": pct(acks, 50), "p99": pct(acks, 99)},
            "escalations": counts["escalated"],
            "escalation_rules": rules,
            "lost": counts["lost"],
            "duplicates": counts["duplicates"],
            "webhook_errors": counts["errors"],
            "error_samples": [m.error for m in messages if m.error][:3],
            "late_replies": sum(lead.late for lead in self.state),
            "replies_after_handoff": sum(lead.after_handoff for lead in self.state),
            "other_replies": self.other_replies,
            "leads_completed": sum(
                1
                for lead in self.state
                if len(lead.messages) == len(lead.dialogue.turns)
                and all(m.replies and not m.lost for m in lead.messages)
            ),
        }

    def leads_detail(self) -> list[dict[str, Any]]:
        return [
            {
                "contact": lead.contact,
                "dialogue": lead.dialogue.name,
                "conversation_id": lead.conversation_id,
                "escalated": lead.escalated,
                "rule": lead.rule,
                "messages": [
                    {
                        "turn": m.turn,
                        "text": m.text,
                        "reply_ms": None if m.reply_ms is None else round(m.reply_ms, 1),
                        "replies": [r.text for r in m.replies],
                        "lost": m.lost,
                        "error": m.error,
                    }
                    for m in lead.messages
                ],
            }
            for lead in self.state
        ]


def _recorded(detail: dict[str, Any], lead_messages: int) -> bool:
    """The conversation shows the lead's `lead_messages` messages and something after the last
    one (the reply, a notice, a note): the turn is recorded, its escalation with it."""
    roles = [str(entry.get("role")) for entry in detail.get("transcript") or []]
    if roles.count(Role.LEAD.value) < lead_messages:
        return False
    return bool(roles) and roles[-1] != Role.LEAD.value
