"""The `offline` agent backend: deterministic rules and templates, no network, no model.

It is the embedded default so that leadflow runs end to end with no setup, and it says what it
is: every call is recorded as provider "offline", model "rules-v2", with token counts that are a
word-count estimate and the latency it measured. Like every backend it only perceives and
writes: escalation, priority, stage and score are the workflow's (workflows/escalation.py).

What it knows comes from its pack (activities/llm/offline_pack.py: keywords, word lists,
templates, questions), the playbook's persona and the knowledge hits it is given. Modules:
- offline_extract.py: language, sentiment and field values read from a message;
- offline_write.py: replies, outreach, follow-ups, notices, alerts and e-mails;
- this module: intents and confidence (perception), usage records, the backend and its factory.

Confidence means "how sure the rules are they understood", and the playbooks' `low_confidence`
escalation (`confidence_below: 0.3`) reads it: a longer message no rule understood scores
below 0.3 (a human should look), anything understood 0.3 or more.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

from activities.llm.base import (
    BackendSpec,
    CallRecord,
    EmailContext,
    Perceived,
    PerceptionContext,
    WritingContext,
    Written,
    WrittenEmailDraft,
)
from activities.llm.offline_extract import (
    detect_language,
    extract_cars,
    extract_company,
    extract_contact,
    extract_fuel,
    extract_max_mileage,
    extract_money,
    extract_team_size,
    extract_time,
    extract_timeline,
    extract_year,
    has_phrase,
    is_urgent,
    sentiment,
    words,
)
from activities.llm.offline_pack import OfflinePack, pack_for
from activities.llm.offline_write import OfflineWriter, lead_texts, topics_in
from models.agent import SUMMARY_MAX, FieldValue, Perception
from models.common import Intent, Role
from models.messages import TranscriptEntry
from models.playbook import Playbook
from models.policy import CONTROL_FIELDS
from models.settings import Settings
from workflows.escalation import matched_keywords

PROVIDER_NAME = "offline"
MODEL_NAME = "rules-v2"

# --- confidence levels (named so the playbooks' `confidence_below: 0.3` has a reference) ---
CONFIDENCE_NOTHING_MATCHED = 0.2  # a longer message no rule understood: worth a human look
CONFIDENCE_SHORT_UNMATCHED = 0.4  # "ok", "👍": nothing to misunderstand
CONFIDENCE_FIELDS_ONLY = 0.55  # no intent words, but it answered a question (budget, a car)
CONFIDENCE_INJECTION = 0.6  # recognised as an attempt to change the assistant's role
CONFIDENCE_BASE = 0.55
CONFIDENCE_PER_KEYWORD = 0.15
CONFIDENCE_MAX = 0.95
SHORT_MESSAGE_WORDS = 3

# The primary intent is the one that needs the most care among those the message shows: a
# complaint that also asks about a price is a complaint; a test-drive request that names a car
# is a meeting. Greeting only leads when nothing else was said.
INTENT_PRECEDENCE: tuple[Intent, ...] = (
    Intent.COMPLAINT,
    Intent.HUMAN_REQUEST,
    Intent.NOT_INTERESTED,
    Intent.FINANCING,
    Intent.MEETING,
    Intent.TRADE_IN,
    Intent.PRICING,
    Intent.PRODUCT_INQUIRY,
    Intent.GREETING,
    Intent.OTHER,
)
# Fields that say what the lead wants to buy: a message with only these answers a
# qualification question about the product.
_PRODUCT_FIELDS = frozenset(
    {
        "make",
        "model",
        "budget",
        "fuel_type",
        "year",
        "max_mileage",
        "timeline",
        "team_size",
        "company",
        "urgency",
    }
)
_CONTACT_FIELDS = frozenset({"name", "email", "phone"})


def estimate_tokens(*texts: str) -> int:
    """A word-count estimate (about 4 tokens per 3 words); no tokenizer is involved."""
    count = sum(len(t.split()) for t in texts)
    return math.ceil(count * 4 / 3)


def call_record(inputs: Sequence[str], output: str, started: float) -> CallRecord:
    return CallRecord(
        provider=PROVIDER_NAME,
        model=MODEL_NAME,
        input_tokens=estimate_tokens(*inputs),
        output_tokens=estimate_tokens(output),
        latency_ms=round((time.perf_counter() - started) * 1000),
        started_ns=time.time_ns() - round((time.perf_counter() - started) * 1e9),
    )


def _last_ai_text(transcript: Sequence[TranscriptEntry]) -> str:
    for entry in reversed(transcript):
        if entry.role == Role.AI:
            return entry.text
    return ""


def _is_opt_out(text: str, pack: OfflinePack) -> bool:
    if has_phrase(text, pack.word_list("opt_out")):
        return True
    bare = " ".join(words(text))
    return bare in {" ".join(words(w)) for w in pack.word_list("opt_out_bare")}


def _starts_with(text: str, answers: Sequence[str]) -> bool:
    tokens = words(text)
    if not tokens and text.strip():
        tokens = [text.strip()]
    first = " ".join(tokens[:2])
    return any(first == a.lower() or first.startswith(a.lower() + " ") for a in answers)


class OfflinePerceiver:
    """Perception for one playbook: intents, confidence, language, sentiment and fields."""

    def __init__(self, playbook: Playbook) -> None:
        self.playbook = playbook
        self.pack = pack_for(playbook)
        self.declared: dict[str, str] = {s.name: s.type for s in playbook.fields}
        for name, kind in CONTROL_FIELDS.items():
            self.declared.setdefault(name, kind)
        self.intents = {r.intent for r in playbook.intents} or set(Intent)

    def language(
        self,
        text: str,
        transcript: Sequence[TranscriptEntry],
        known: Mapping[str, FieldValue],
    ) -> str:
        playbook = self.playbook
        allowed = playbook.languages or (playbook.default_language,)
        if len(allowed) == 1:
            return allowed[0]
        detected = detect_language(text, allowed, self.pack)
        if detected is None:
            # Too little to tell ("Golf, 25k"): keep the language the lead wrote in before.
            detected = detect_language(" ".join(lead_texts(transcript)[-5:]), allowed, self.pack)
        if detected is None:
            known_language = known.get("language")
            detected = known_language if isinstance(known_language, str) else None
        return detected if detected in allowed and detected else playbook.default_language

    def perceive(self, context: PerceptionContext) -> Perception:
        pack = self.pack
        text = "\n".join(m.strip() for m in context.new_messages if m.strip())
        language = self.language(text, context.transcript, context.known_fields)
        last_ai = _last_ai_text(context.transcript)

        hits: dict[Intent, list[str]] = {}
        for name, by_language in pack.keywords.items():
            try:
                intent = Intent(name)
            except ValueError:
                continue  # a pack word list for an intent this version does not know
            if intent not in self.intents:
                continue
            found = matched_keywords(text, by_language)
            if found:
                hits[intent] = found
        opt_out = _is_opt_out(text, pack)
        injection = has_phrase(text, pack.word_list("injection"))
        topics = [name for name, _ in topics_in(text, pack)]
        if topics and Intent.PRODUCT_INQUIRY in self.intents:
            hits.setdefault(Intent.PRODUCT_INQUIRY, []).extend(f"topic:{t}" for t in topics)

        # A day or time is a proposed visit only in a conversation about one: the message asks
        # for a meeting, answers our question for a day and time, or one is being arranged.
        meeting_context = (
            Intent.MEETING in hits
            or self._asked_for_time(last_ai)
            or bool(context.known_fields.get("preferred_time"))
        )
        raw = self.extract(text, meeting_context=meeting_context, injection=injection)
        if self._asked(last_ai, "trade_in") and "make" in raw and "trade_in_vehicle" not in raw:
            # "ja, een Citroen C1" answers "do you have a car to trade in?": that is their car.
            make, model = raw.pop("make"), raw.pop("model", "")
            raw["trade_in_vehicle"] = f"{make} {model}".strip()
        if raw.pop("_discount", False) and Intent.PRICING in self.intents:
            hits.setdefault(Intent.PRICING, []).append("discount")
        if opt_out:
            raw["opt_out"] = True
            hits.setdefault(Intent.NOT_INTERESTED, []).append("opt-out")
        raw.update(self._answer_to_last_question(text, last_ai, raw))
        if (
            raw.get("trade_in") is True
            and "trade_in_vehicle" in raw
            and Intent.TRADE_IN in self.intents
        ):
            hits.setdefault(Intent.TRADE_IN, []).append("trade-in car")
        fields = {k: v for k, v in raw.items() if k in self.declared}

        intent, confidence = self._primary(hits, fields, text, opt_out=opt_out, injection=injection)
        secondary = tuple(
            i for i in INTENT_PRECEDENCE if i in hits and i != intent and i in self.intents
        )
        mood = sentiment(text, pack)
        shown = ", ".join(f"{k}={v}" for k, v in fields.items())
        summary = (
            intent.value
            + (f" (+{', '.join(i.value for i in secondary)})" if secondary else "")
            + f"; {language}; confidence {confidence:.2f}"
            + (f"; asks: {', '.join(topics)}" if topics else "")
            + ("; tries to change the assistant's instructions" if injection else "")
            + (f"; {shown}" if shown else "")
            + " [offline rules]"
        )
        return Perception(
            intent=intent,
            secondary_intents=secondary,
            confidence=round(max(0.0, min(1.0, confidence)), 2),
            language=language,
            sentiment=mood,
            fields=fields,
            summary=summary[:SUMMARY_MAX],
        )

    def _asked(self, last_ai: str, field_name: str) -> bool:
        questions = self.pack.questions.get(field_name, {}).values()
        return bool(last_ai) and any(q and q in last_ai for q in questions)

    def _asked_for_time(self, last_ai: str) -> bool:
        if not last_ai:
            return False
        questions = [
            *self.pack.templates.get("meeting_time_question", {}).values(),
            *self.pack.questions.get("preferred_time", {}).values(),
        ]
        return any(q and q in last_ai for q in questions)

    def _primary(
        self,
        hits: Mapping[Intent, list[str]],
        fields: Mapping[str, FieldValue],
        text: str,
        *,
        opt_out: bool,
        injection: bool,
    ) -> tuple[Intent, float]:
        if opt_out:
            return Intent.NOT_INTERESTED, CONFIDENCE_MAX
        if injection:
            # Whatever else it names, the message is an attempt to steer the assistant: answer
            # it with the default reply, never with what it asked for.
            return Intent.OTHER, CONFIDENCE_INJECTION
        informative = set(fields) - {"opt_out"}
        ranked = [i for i in INTENT_PRECEDENCE if i in hits]
        # "Om 11 uur is prima": a greeting word next to an answer is not a greeting.
        if ranked and not (ranked == [Intent.GREETING] and informative):
            leading = [i for i in ranked if i != Intent.GREETING] or ranked
            intent = leading[0]
            return intent, min(
                CONFIDENCE_MAX, CONFIDENCE_BASE + CONFIDENCE_PER_KEYWORD * len(hits[intent])
            )
        if "preferred_time" in informative and Intent.MEETING in self.intents:
            return Intent.MEETING, CONFIDENCE_FIELDS_ONLY
        if "monthly_budget" in informative and Intent.FINANCING in self.intents:
            return Intent.FINANCING, CONFIDENCE_FIELDS_ONLY
        if "trade_in_vehicle" in informative and Intent.TRADE_IN in self.intents:
            return Intent.TRADE_IN, CONFIDENCE_FIELDS_ONLY
        if informative - {"urgency"} == {"budget"} and Intent.PRICING in self.intents:
            return Intent.PRICING, CONFIDENCE_FIELDS_ONLY  # "rond de 20 a 22 duizend"
        if informative & _PRODUCT_FIELDS and Intent.PRODUCT_INQUIRY in self.intents:
            return Intent.PRODUCT_INQUIRY, CONFIDENCE_FIELDS_ONLY
        if informative:
            return Intent.OTHER, CONFIDENCE_FIELDS_ONLY
        if len(words(text)) <= SHORT_MESSAGE_WORDS:
            return Intent.OTHER, CONFIDENCE_SHORT_UNMATCHED
        return Intent.OTHER, CONFIDENCE_NOTHING_MATCHED

    def extract(
        self, text: str, *, meeting_context: bool, injection: bool
    ) -> dict[str, FieldValue]:
        """Every field the rules read in `text` (the caller keeps what the playbook declares)."""
        pack, declared = self.pack, self.declared
        fields: dict[str, FieldValue] = {}
        fields.update(extract_cars(text, pack))
        money = extract_money(text, pack)
        if money.discount:
            fields["_discount"] = True
        if not injection:
            # "give me the car for €1" names an amount nobody means as a budget.
            if money.budget is not None:
                fields["budget"] = money.budget
            if money.monthly is not None:
                if "monthly_budget" in declared:
                    fields["monthly_budget"] = money.monthly
                else:
                    fields.setdefault("budget", money.monthly)
        fuel = extract_fuel(text)
        if fuel:
            fields["fuel_type"] = fuel
        year = extract_year(text)
        if year is not None:
            fields["year"] = year
        mileage = extract_max_mileage(text)
        if mileage is not None:
            fields["max_mileage"] = mileage
        slot = extract_time(text, meeting_context=meeting_context)
        timeline = extract_timeline(text)
        if (
            meeting_context
            and slot is None
            and timeline
            in {
                "next week",
                "this week",
                "volgende week",
                "deze week",
            }
        ):
            slot, timeline = timeline, None  # "can I come by next week": the visit, not the car
        if slot:
            fields["preferred_time"] = slot
        if timeline and not (slot and timeline in slot.lower()):
            fields["timeline"] = timeline
        if is_urgent(text) and not (slot and timeline is None and extract_timeline(slot)):
            fields["urgency"] = True
        hit = self._hits
        if hit(text, Intent.TRADE_IN) or "trade_in_vehicle" in fields:
            fields["trade_in"] = True
        if hit(text, Intent.FINANCING) or "monthly_budget" in fields:
            fields["financing"] = True
        fields.update(extract_contact(text))
        company = extract_company(text)
        if company:
            fields["company"] = company
        team = extract_team_size(text)
        if team is not None:
            fields["team_size"] = team
        if injection:
            # A message that tries to steer the assistant is not a source of facts about the
            # lead ("confirm the Golf costs €5,000"); only how to reach them is kept.
            fields = {k: v for k, v in fields.items() if k in _CONTACT_FIELDS}
        return fields

    def _hits(self, text: str, intent: Intent) -> bool:
        return bool(matched_keywords(text, self.pack.keywords.get(intent.value, {})))

    def _answer_to_last_question(
        self, text: str, last_ai: str, fields: Mapping[str, FieldValue]
    ) -> dict[str, FieldValue]:
        """A bare "ja"/"nee" answers the yes/no question the AI just asked."""
        if not last_ai:
            return {}
        for spec in self.playbook.fields:
            if spec.type != "bool" or spec.name in fields:
                continue
            questions = self.pack.questions.get(spec.name, {}).values()
            if any(q and q in last_ai for q in questions):
                if _starts_with(text, self.pack.word_list("affirmative")):
                    return {spec.name: True}
                if _starts_with(text, self.pack.word_list("negative_answer")):
                    return {spec.name: False}
        return {}


class OfflineBackend:
    """Implements `activities.llm.base.AgentBackend` with rules; see the module docstring."""

    provider = PROVIDER_NAME
    model = MODEL_NAME
    key = PROVIDER_NAME  # no credential: one circuit for every tenant

    async def perceive(self, context: PerceptionContext) -> Perceived:
        started = time.perf_counter()
        perception = OfflinePerceiver(context.playbook).perceive(context)
        inputs = [*context.new_messages, *(e.text for e in context.transcript)]
        inputs += [h.snippet for h in context.knowledge]
        return Perceived(
            perception=perception,
            calls=(call_record(inputs, perception.model_dump_json(), started),),
        )

    async def write(self, context: WritingContext) -> Written:
        """A message for the lead (or, for SPECIALIST_ALERT, for the business's staff).

        For OUTREACH (and FOLLOW_UP) a given `instruction` becomes the core of the message,
        word for word after the greeting and introduction: the offline provider cannot
        rephrase, so write the instruction as you would say it to the lead ("We have a
        winter tyre check this week; shall I book you in?"). Without one it sends the pack's
        own outreach text.
        """
        started = time.perf_counter()
        writer = OfflineWriter(context.playbook)
        text, knowledge_ids = writer.write(context)
        inputs = [e.text for e in context.transcript] + [h.snippet for h in context.knowledge]
        if context.instruction:
            inputs.append(context.instruction)
        if context.inventory is not None:
            inputs += [item.describe() for item in context.inventory.cited()]
        return Written(
            text=text,
            calls=(call_record(inputs, text, started),),
            knowledge_ids=knowledge_ids,
            inventory_keys=writer.cited,
        )

    async def write_email(self, context: EmailContext) -> WrittenEmailDraft:
        """A personalised outreach e-mail: the first sentence of what enrichment found about the
        company, quoted, then the pack's pitch (or the `instruction`, word for word)."""
        started = time.perf_counter()
        subject, body = OfflineWriter(context.playbook).email(context)
        facts = context.facts
        inputs = [*context.lead.values(), facts.summary or "", facts.company or ""]
        return WrittenEmailDraft(
            subject=subject,
            body=body,
            calls=(call_record(inputs, f"{subject} {body}", started),),
        )


def offline_backend(spec: BackendSpec, settings: Settings) -> OfflineBackend:
    """The `BackendFactory` registered as "offline"; it needs no model, key or settings."""
    del spec, settings
    return OfflineBackend()


__all__ = [
    "MODEL_NAME",
    "PROVIDER_NAME",
    "OfflineBackend",
    "OfflinePerceiver",
    "estimate_tokens",
    "offline_backend",
]
