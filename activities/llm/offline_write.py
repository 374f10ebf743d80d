"""How the offline provider writes: templates from its pack, filled with what is known.

It never states a fact it was not given. Prices, stock and specifications only appear when a
knowledge hit carries them (quoted as written) or the inventory answer cites the car (its
title, fuel, mileage, price and link, as activities/llm/citations.py writes them); opening
hours, the address and the warranty only when the playbook's persona (business_description,
products) says them. Amounts in a reply therefore always come from a knowledge hit, a cited
car or the lead's own messages, which is what the reply guard checks. It never repeats the
playbook's `rules` either: those are instructions for a model, not text for the lead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from activities.llm.amounts import amounts_in
from activities.llm.base import EmailContext, WritingContext
from activities.llm.citations import (
    MAX_CITED,
    WISH_FIELDS,
    item_facts,
    relaxed_text,
    wish_text,
)
from activities.llm.offline_extract import detect_language, extract_time, has_phrase, phrases_in
from activities.llm.offline_pack import OfflinePack, Topic, pack_for
from models.agent import FieldValue, KnowledgeHit
from models.common import Intent, ReplyPurpose, Role
from models.inventory import InventoryAnswer, InventoryItem
from models.messages import TranscriptEntry
from models.playbook import Playbook

# The lead wants no sales question after these.
NO_QUESTION_INTENTS = frozenset({Intent.COMPLAINT, Intent.HUMAN_REQUEST, Intent.NOT_INTERESTED})
# Fields not shown back to the lead in "I've noted: ...".
UNDISPLAYED_FIELDS = frozenset({"model", "urgency", "name", "opt_out", "preferred_time"})
# Below this the rules did not understand the message (matches the playbooks' low_confidence).
CLARIFY_BELOW = 0.3
# Intents a reply answers with the cars in stock when the inventory was looked up; the others
# (a meeting, financing, a trade-in) keep their own answer (a meeting asked for together with a
# new wish gets the cars after its answer).
INVENTORY_INTENTS = frozenset(
    {Intent.PRODUCT_INQUIRY, Intent.PRICING, Intent.OTHER, Intent.GREETING}
)

_FUEL_DISPLAY: dict[str, dict[str, str]] = {
    "nl": {"petrol": "benzine", "electric": "elektrisch", "hybrid": "hybride"},
}


class _Blank(dict[str, str]):
    # A placeholder the context does not fill renders empty rather than failing the reply.
    def __missing__(self, key: str) -> str:
        return ""


def render(pack: OfflinePack, keys: Sequence[str], lang: str, ctx: Mapping[str, str]) -> str:
    """The first of `keys` the pack has a text for, filled with `ctx`."""
    for key in keys:
        template = pack.text(key, lang)
        if template is None:
            continue
        try:
            text = template.format_map(_Blank(ctx))
        except (ValueError, IndexError, AttributeError, KeyError):
            # A tenant's template with stray braces is sent as written rather than failing.
            text = template
        text = re.sub(r"[ \t]{2,}", " ", text).replace(" ,", ",").replace(" !", "!")
        return text.replace(" .", ".").strip()
    return ""


def _has_value(value: object) -> bool:
    return value is not None and value != ""


def format_euros(amount: int, lang: str) -> str:
    grouped = f"{amount:,}"
    return "€" + (grouped.replace(",", ".") if lang == "nl" else grouped)


def _display(name: str, value: FieldValue, lang: str, money: frozenset[int]) -> str:
    if name in {"budget", "monthly_budget"} and isinstance(value, int | float):
        amount = round(value)
        if amount in money:
            return format_euros(amount, lang)
        # "max 15000" was not written as money: shown without a currency, the reply names no
        # amount the lead did not give (what the reply guard checks).
        return format_euros(amount, lang).lstrip("€")
    if name == "fuel_type" and isinstance(value, str):
        return _FUEL_DISPLAY.get(lang, {}).get(value, value)
    if name == "max_mileage" and isinstance(value, int | float):
        return format_euros(round(value), lang).lstrip("€") + " km"  # grouped like a price
    return str(value)


def describe_fields(
    playbook: Playbook,
    pack: OfflinePack,
    fields: Mapping[str, FieldValue],
    lang: str,
    money: frozenset[int] = frozenset(),
) -> str:
    """'Volkswagen Golf, diesel, budget €25.000, inruil' in the playbook's field order."""
    items: list[str] = []
    make, model = fields.get("make"), fields.get("model")
    if _has_value(make) or _has_value(model):
        items.append(" ".join(str(v) for v in (make, model) if _has_value(v)))
    order = [spec.name for spec in playbook.fields] or sorted(fields)
    for name in order:
        if name in UNDISPLAYED_FIELDS or name == "make" or name not in fields:
            continue
        value = fields[name]
        labels = pack.labels.get(name, {})
        label = labels.get(lang) or labels.get("en") or name.replace("_", " ")
        if isinstance(value, bool):
            if value:
                items.append(label)
            continue
        if not _has_value(value):
            continue
        shown = _display(name, value, lang, money)
        if name == "fuel_type":
            items.append(shown)
        elif name == "budget":
            items.append(f"{label} {shown}")
        elif name == "monthly_budget":
            items.append(f"{shown} {label}")
        else:
            items.append(f"{label}: {shown}")
    return ", ".join(items)


def lead_texts(transcript: Sequence[TranscriptEntry]) -> list[str]:
    return [e.text for e in transcript if e.role == Role.LEAD]


def this_turn(transcript: Sequence[TranscriptEntry]) -> str:
    """The lead's messages after the last message of ours: what this reply answers."""
    texts: list[str] = []
    for entry in reversed(transcript):
        if entry.role != Role.LEAD:
            break
        texts.append(entry.text)
    return "\n".join(reversed(texts))


def topics_in(text: str, pack: OfflinePack) -> list[tuple[str, Topic]]:
    return [(name, t) for name, t in pack.topics.items() if t.keywords and _asks(text, t)]


def _asks(text: str, topic: Topic) -> bool:
    return any(has_phrase(text, words) for words in topic.keywords.values())


_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9€\"'(])")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_SPLIT.split(" ".join(text.split())) if s.strip()]


def find_sentence(
    texts: Iterable[str],
    evidence: Sequence[str],
    prefer: Callable[[str], bool] | None = None,
) -> str | None:
    """A sentence naming evidence words: one `prefer` accepts (in the lead's language) before
    any other, then the one naming the most; among equals the first. A reply in the wrong
    language would be blocked by the reply guard, however well it matches."""
    best: tuple[int, bool, str] | None = None
    for text in texts:
        for sentence in sentences(text):
            found = len(phrases_in(sentence, evidence))
            if not found:
                continue
            liked = prefer(sentence) if prefer else False
            if best is None or (liked, found) > (best[1], best[0]):
                best = (found, liked, sentence)
    return best[2] if best else None


def next_question(
    pack: OfflinePack,
    playbook: Playbook,
    fields: Mapping[str, FieldValue],
    lang: str,
    transcript: Sequence[TranscriptEntry] = (),
    *,
    skip: Iterable[str] = (),
) -> str | None:
    """The question for the first missing field, skipping ones already asked twice."""
    asked = [e.text for e in transcript if e.role == Role.AI]
    skipped = set(skip)
    for spec in playbook.fields:
        if spec.name in skipped or _has_value(fields.get(spec.name)):
            continue
        question = pack.questions.get(spec.name, {}).get(lang)
        if not question:
            continue
        if sum(1 for text in asked if question in text) >= 2:
            continue
        return question
    return None


def known_time(
    fields: Mapping[str, FieldValue], transcript: Sequence[TranscriptEntry]
) -> str | None:
    """A day or time the lead already gave: in the known fields, else in their messages."""
    value = fields.get("preferred_time")
    if isinstance(value, str) and value:
        return value
    for text in reversed(lead_texts(transcript)):
        found = extract_time(text, meeting_context=True)
        if found:
            return found
    return None


@dataclass(frozen=True)
class _Stock:
    """The inventory part of a reply: its text, the cited item keys, the question after it."""

    text: str
    keys: tuple[str, ...]
    question: str


class OfflineWriter:
    """Writes every purpose for one playbook; see the module docstring."""

    def __init__(self, playbook: Playbook) -> None:
        self.playbook = playbook
        self.pack = pack_for(playbook)
        self.money: frozenset[int] = frozenset()  # amounts the lead wrote as money
        self.cited: tuple[str, ...] = ()  # keys of the inventory items the last text cites

    def _given_money(self, context: WritingContext) -> frozenset[int]:
        found: set[int] = set()
        for text in lead_texts(context.transcript):
            found |= amounts_in(text)
        return frozenset(found)

    # ------------------------------------------------------------ context
    def language(self, context: WritingContext) -> str:
        allowed = self.playbook.languages or (self.playbook.default_language,)
        perceived = context.perception.language if context.perception else None
        for candidate in (context.language, perceived):
            if candidate and candidate in allowed:
                return candidate
        return self.playbook.default_language

    def fields(self, context: WritingContext) -> dict[str, FieldValue]:
        fields: dict[str, FieldValue] = dict(context.known_fields)
        if context.perception:
            fields.update(context.perception.fields)
        return fields

    def base_context(
        self, fields: Mapping[str, FieldValue], lang: str, contact_name: str | None
    ) -> dict[str, str]:
        playbook, pack = self.playbook, self.pack
        name_field = fields.get("name")
        full_name = contact_name or (name_field if isinstance(name_field, str) else "")
        first_name = full_name.split()[0] if full_name.split() else ""
        ctx: dict[str, str] = {
            "name": first_name,
            "business": playbook.business_name,
            "assistant": playbook.assistant_name or playbook.business_name,
            "details": describe_fields(playbook, pack, fields, lang, self.money),
        }
        ctx["hello"] = render(pack, ["hello_named" if first_name else "hello"], lang, ctx)
        make, model = fields.get("make"), fields.get("model")
        if _has_value(make) and _has_value(model):
            ctx["interest"] = f"{'de' if lang == 'nl' else 'the'} {make} {model}"
        elif _has_value(model):
            ctx["interest"] = f"{'de' if lang == 'nl' else 'the'} {model}"
        elif _has_value(make):
            ctx["interest"] = f"{'een' if lang == 'nl' else 'a'} {make}"
        else:
            ctx["interest"] = render(pack, ["interest_default"], lang, ctx)
        return ctx

    # ------------------------------------------------------------ purposes
    def write(self, context: WritingContext) -> tuple[str, tuple[str, ...]]:
        """The text and the ids of the knowledge hits it quotes."""
        lang = self.language(context)
        fields = self.fields(context)
        self.money = self._given_money(context)
        self.cited = ()
        ctx = self.base_context(fields, lang, context.contact_name)
        purpose = context.purpose
        if purpose == ReplyPurpose.SPECIALIST_ALERT:
            return self.specialist_alert(context, fields), ()
        if purpose == ReplyPurpose.ESCALATION_NOTICE:
            keys = (
                [f"escalation_notice.{context.escalation_rule}"] if context.escalation_rule else []
            )
            if context.perception:
                keys.append(f"escalation_notice.{context.perception.intent.value}")
            return render(self.pack, [*keys, "escalation_notice"], lang, ctx), ()
        if purpose == ReplyPurpose.HOLDING:
            return render(self.pack, ["holding"], lang, ctx), ()
        if purpose == ReplyPurpose.OUTREACH:
            return self.outreach(context, fields, lang, ctx), ()
        if purpose == ReplyPurpose.FOLLOW_UP:
            return self.follow_up(context, fields, lang, ctx), ()
        return self.reply(context, fields, lang, ctx)

    def _instruction(self, instruction: str | None) -> str:
        text = " ".join((instruction or "").split())
        if text and text[-1] not in ".!?…":
            text += "."
        return text

    def outreach(
        self,
        context: WritingContext,
        fields: Mapping[str, FieldValue],
        lang: str,
        ctx: dict[str, str],
    ) -> str:
        instruction = self._instruction(context.instruction)
        if instruction:
            text = render(
                self.pack, ["outreach_instruction"], lang, {**ctx, "instruction": instruction}
            )
        else:
            text = render(self.pack, ["outreach"], lang, ctx)
        if "?" not in text:
            question = next_question(
                self.pack, self.playbook, fields, lang, context.transcript, skip=("preferred_time",)
            )
            text = f"{text} {question or render(self.pack, ['next_step'], lang, ctx)}"
        return text.strip()

    def follow_up(
        self,
        context: WritingContext,
        fields: Mapping[str, FieldValue],
        lang: str,
        ctx: dict[str, str],
    ) -> str:
        number = max(1, context.follow_up_number)
        instruction = self._instruction(context.instruction)
        if instruction:
            return render(
                self.pack, ["follow_up_instruction"], lang, {**ctx, "instruction": instruction}
            )
        keys = [f"follow_up_{n}" for n in range(number, 1, -1)] + ["follow_up"]
        text = render(self.pack, keys, lang, ctx)
        # Only the first follow-up repeats the open question; later ones just check in.
        if number == 1 and "?" not in text:
            question = next_question(
                self.pack, self.playbook, fields, lang, context.transcript, skip=("preferred_time",)
            )
            if question:
                text = f"{text} {question}"
        return text

    def reply(
        self,
        context: WritingContext,
        fields: dict[str, FieldValue],
        lang: str,
        ctx: dict[str, str],
    ) -> tuple[str, tuple[str, ...]]:
        pack, playbook = self.pack, self.playbook
        perception = context.perception
        intent = perception.intent if perception else Intent.OTHER
        intents = {intent, *(perception.secondary_intents if perception else ())}
        text = this_turn(context.transcript)
        new_fields = dict(perception.fields) if perception else {}
        used: list[str] = []

        if new_fields.get("opt_out") is True:
            return render(pack, ["opt_out", "not_interested"], lang, ctx), ()
        injection = has_phrase(text, pack.word_list("injection"))
        already_talking = any(e.role == Role.AI for e in context.transcript)
        if injection:
            key = "injection"
        elif intent == Intent.PRICING and (
            has_phrase(text, pack.word_list("discount_after"))
            or has_phrase(text, ("deal", "bod", "bieden", "offer", "bid"))
        ):
            key = "negotiation"
        elif (
            intent in (Intent.PRICING, Intent.FINANCING) and perception and perception.sentiment < 0
        ):
            key = "objection"
        elif intent == Intent.GREETING and already_talking:
            key = "greeting_again"  # "bedankt!" mid-conversation is not a new hello
        elif intent == Intent.OTHER and perception and perception.confidence < CLARIFY_BELOW:
            key = "clarify"
        elif intent == Intent.OTHER and new_fields:
            key = "answer"
        else:
            key = intent.value
        asked_topics = [] if intent in NO_QUESTION_INTENTS or injection else topics_in(text, pack)
        stock = self._stock(context, lang, ctx, key, injection, asked_topics)

        parts: list[str] = []
        trailing_question = ""
        # "I'm looking for a Golf around €25,000, can I test drive it this week?": the meeting
        # keeps its own opening and the cars it could be with follow it.
        meeting_with_stock = stock is not None and intent == Intent.MEETING
        if stock is not None:
            if meeting_with_stock:
                opening = render(pack, [key, "other"], lang, ctx)
                split = re.match(r"^(.*[.!])\s+([^.!?]+\?)$", opening, re.DOTALL)
                parts.append(split.group(1) if split else opening)
            # The cars answer the wish, availability, mileage and price at once: they replace
            # the intent's opening, the "I've noted" line and the per-car look-up promises.
            parts.append(stock.text)
            self.cited = stock.keys
            asked_topics = [(n, t) for n, t in asked_topics if not t.per_item]
        elif not (asked_topics and intent in (Intent.PRODUCT_INQUIRY, Intent.OTHER)):
            opening = render(pack, [key, "other"], lang, ctx)
            # A question at the end of the opening moves to the end of the whole reply, after
            # what was noted and quoted, so the lead's next step is the last thing they read.
            split = re.match(r"^(.*[.!])\s+([^.!?]+\?)$", opening, re.DOTALL)
            parts.append(split.group(1) if split else opening)
            trailing_question = split.group(2) if split else ""
        else:
            parts.append(render(pack, ["hello"], lang, ctx) + "!")
            trailing_question = ""
        if intent in NO_QUESTION_INTENTS:
            return " ".join(p for p in parts if p), ()

        shown = {k: v for k, v in new_fields.items() if k not in UNDISPLAYED_FIELDS or k == "model"}
        if shown and not injection and stock is None:
            details = describe_fields(playbook, pack, shown, lang, self.money)
            if details:
                parts.append(render(pack, ["noted"], lang, {**ctx, "details": details}))

        question: str | None = trailing_question or None
        persona = (playbook.business_description, playbook.products)
        for _name, topic in asked_topics:
            topic_ctx = {**ctx, "topic": topic.label.get(lang) or topic.label.get("en", _name)}
            hit_sentence = self._from_knowledge(context.knowledge, topic.evidence)
            if hit_sentence is not None:
                hit, sentence = hit_sentence
                used.append(hit.document_id)
                parts.append(
                    render(
                        pack,
                        ["knowledge"],
                        lang,
                        {**topic_ctx, "title": hit.title, "snippet": sentence},
                    )
                )
            elif (
                fact := find_sentence(persona, topic.evidence, self._in_language(lang))
            ) is not None and not topic.per_item:
                parts.append(render(pack, ["persona_fact"], lang, {**topic_ctx, "snippet": fact}))
            elif topic.per_item and not (
                _has_value(fields.get("make")) or _has_value(fields.get("model"))
            ):
                question = render(pack, ["ask_item"], lang, topic_ctx)
            elif topic.per_item:
                parts.append(render(pack, ["look_up"], lang, topic_ctx))
            else:
                parts.append(render(pack, ["ask_colleague"], lang, topic_ctx))
        if (
            not asked_topics
            and context.knowledge
            and not injection
            and intent != Intent.GREETING
            and stock is None
        ):
            hit = context.knowledge[0]
            quoted = " ".join(sentences(hit.snippet)[:2])
            if quoted:
                if quoted[-1] not in ".!?…":
                    quoted += "…"
                used.append(hit.document_id)
                parts.append(
                    render(
                        pack, ["knowledge"], lang, {**ctx, "title": hit.title, "snippet": quoted}
                    )
                )

        wants_meeting = Intent.MEETING in intents or _has_value(new_fields.get("preferred_time"))
        time = known_time(fields, context.transcript) if wants_meeting else None
        if time:
            # The lead already said when: confirm it, never ask for it again.
            parts.append(render(pack, ["meeting_time_noted"], lang, {**ctx, "time": time}))
        elif wants_meeting and question is None:
            question = render(pack, ["meeting_time_question"], lang, ctx)
        if question is None and stock is not None and not meeting_with_stock:
            question = stock.question or None
        if question is None and not asked_topics and not any("?" in p for p in parts):
            question = next_question(
                pack, playbook, fields, lang, context.transcript, skip=("preferred_time",)
            )
            if question is None and not time:
                question = render(pack, ["next_step"], lang, ctx)
        if question:
            parts.append(question)
        reply = " ".join(p for p in parts if p)
        if stock is not None:
            reply = reply.replace("\n ", "\n")  # the lines of the car list start flush
        return reply, tuple(dict.fromkeys(used))

    def _stock(
        self,
        context: WritingContext,
        lang: str,
        ctx: Mapping[str, str],
        key: str,
        injection: bool,
        asked_topics: Sequence[tuple[str, Topic]],
    ) -> _Stock | None:
        """The inventory's answer to the lead's wish as WhatsApp lines, when this reply should
        give it: the lead asks about a car, a price or availability, or tells a new wish, and
        is not negotiating, complaining or steering the assistant."""
        answer = context.inventory
        perception = context.perception
        if answer is None or perception is None or injection:
            return None
        new_wish = bool(WISH_FIELDS & set(perception.fields))
        meeting_wish = perception.intent == Intent.MEETING and new_wish
        if (perception.intent not in INVENTORY_INTENTS and not meeting_wish) or key in {
            "negotiation",
            "objection",
        }:
            return None
        if (
            asked_topics
            and not new_wish
            and perception.intent != Intent.PRICING
            and not any(topic.per_item for _, topic in asked_topics)
        ):
            return None  # "what are your opening hours?": answered, not a car list again
        # The meeting's own opening greets; the list follows it.
        first = not any(e.role == Role.AI for e in context.transcript) and not meeting_wish
        return self.stock_text(answer, lang, ctx, greet=first)

    def stock_text(
        self, answer: InventoryAnswer, lang: str, ctx: Mapping[str, str], *, greet: bool = True
    ) -> _Stock:
        """Matches: the cars; none: says so plainly, then the nearest alternatives and what
        they give up; nothing near at all: says so and offers to keep an eye out."""
        pack = self.pack
        wish = wish_text(
            answer.query,
            lang,
            budget_as_money=answer.query.max_price is not None
            and round(answer.query.max_price) in self.money,
        )
        wctx = {**ctx, "wish": wish}
        # "Hoi!" opens a conversation, not every answer in it ("En vanaf 2021?").
        hello = render(pack, ["hello"], lang, ctx) + "! " if greet else ""
        cited = answer.cited()[:MAX_CITED]
        lines = [self._car_line(item, lang) for item in cited]
        listing = "\n" + "\n".join(lines) if lines else ""
        if answer.matches:
            intro = hello + render(pack, ["stock_matches"], lang, wctx)
            return _Stock(
                f"{intro}{listing}\n",
                tuple(item.key for item in cited),
                render(pack, ["stock_matches_question", "next_step"], lang, wctx),
            )
        if answer.alternatives:
            gives_up = relaxed_text(answer.relaxed, lang)
            keys = ["stock_alternatives"] if gives_up else ["stock_alternatives_plain"]
            intro = hello + render(pack, keys, lang, {**wctx, "relaxed": gives_up})
            return _Stock(
                f"{intro}{listing}\n",
                tuple(item.key for item in cited),
                render(pack, ["stock_alternatives_question"], lang, wctx),
            )
        return _Stock(
            hello + render(pack, ["stock_none"], lang, wctx),
            (),
            render(pack, ["stock_none_question"], lang, wctx),
        )

    def _car_line(self, item: InventoryItem, lang: str) -> str:
        # Title, then fuel, mileage and price ("• 2019 Volkswagen Golf 1.6 TDI, diesel,
        # 45.000 km, € 18.950"), the link on its own line so WhatsApp previews it. Commas,
        # never dashes, between the numbers: "45.000 km - € 18.950" could read as a range.
        line = "• " + ", ".join([item.title(), *item_facts(item, lang)])
        if item.price is None:
            line += ", " + render(self.pack, ["price_on_request"], lang, {})
        return f"{line}\n{item.url}" if item.url else line

    def _in_language(self, lang: str) -> Callable[[str], bool]:
        allowed = self.playbook.languages or (self.playbook.default_language,)

        def prefer(sentence: str) -> bool:
            return detect_language(sentence, allowed, self.pack) == lang

        return prefer

    def _from_knowledge(
        self, hits: Sequence[KnowledgeHit], evidence: Sequence[str]
    ) -> tuple[KnowledgeHit, str] | None:
        for hit in hits:
            sentence = find_sentence([hit.snippet], evidence)
            if sentence:
                return hit, sentence
        return None

    def specialist_alert(self, context: WritingContext, fields: Mapping[str, FieldValue]) -> str:
        playbook, pack = self.playbook, self.pack
        # The alert goes to the business's own staff: their language, not the lead's.
        lang = playbook.default_language
        texts = lead_texts(context.transcript)
        last = " ".join(texts[-1].split()) if texts else ""
        if len(last) > 300:
            last = last[:300].rsplit(" ", 1)[0] + "…"
        ctx = self.base_context(fields, lang, context.contact_name)
        perception = context.perception
        ctx.update(
            contact=context.contact_name or render(pack, ["unknown_contact"], lang, ctx),
            rule=context.escalation_rule or "-",
            reason=context.instruction or (perception.summary if perception else "") or "-",
            summary=perception.summary if perception else "",
            last_message=last,
        )
        shown = describe_fields(playbook, pack, fields, lang, self.money)
        ctx["details"] = shown or render(pack, ["no_details"], lang, ctx)
        return render(pack, ["specialist_alert"], lang, ctx)

    # ------------------------------------------------------------ e-mail
    def email(self, context: EmailContext) -> tuple[str, str]:
        playbook, pack = self.playbook, self.pack
        lead, facts = context.lead, context.facts
        allowed = playbook.languages or (playbook.default_language,)
        lang = context.language or _column(lead, "language", "taal") or playbook.default_language
        if lang not in allowed:
            lang = playbook.default_language
        first_name = _column(lead, "firstname", "voornaam", "givenname")
        if first_name is None:
            full = _column(lead, "name", "fullname", "contactname", "naam", "contact")
            first_name = full.split()[0] if full else None
        company = facts.company or _column(
            lead,
            "company",
            "companyname",
            "bedrijf",
            "bedrijfsnaam",
            "organisation",
            "organization",
        )
        website = facts.website or _column(lead, "website", "url", "domain", "site")
        ctx: dict[str, str] = {
            "name": first_name or "",
            "first_name": first_name or "",
            "business": playbook.business_name,
            "assistant": playbook.assistant_name or playbook.business_name,
            "company": company or "",
            "website": website or "",
        }
        ctx["hello"] = render(
            pack, ["email_hello" if first_name else "email_hello_anonymous"], lang, ctx
        )
        if not company:
            ctx["company"] = render(pack, ["your_company"], lang, ctx)
        # Only what enrichment found: the first sentence of the site's own summary, verbatim.
        fact = _first_sentence(facts.summary) if facts.summary else ""
        ctx["fact_line"] = (
            render(
                pack,
                ["email_fact"],
                lang,
                {
                    **ctx,
                    "fact": fact,
                    "website_part": f" ({website})" if website else "",
                    "company": company or website or ctx["company"],
                },
            )
            if fact
            else ""
        )
        instruction = self._instruction(context.instruction)
        ctx["pitch"] = (
            instruction or render(pack, ["pitch"], lang, ctx) or playbook.business_description
        )
        subject = render(pack, ["email_subject" if company else "email_subject_generic"], lang, ctx)
        body = render(pack, ["email_body"], lang, ctx)
        return subject, re.sub(r"\n{3,}", "\n\n", body).strip()


def _first_sentence(text: str, limit: int = 240) -> str:
    sentence = re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0].strip()
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(" ", 1)[0] + "…"
    return sentence.strip('"“”')


def _column(lead: Mapping[str, str], *names: str) -> str | None:
    normalised = {re.sub(r"[^a-z0-9]", "", k.lower()): v for k, v in lead.items()}
    for name in names:
        value = normalised.get(name)
        if value and value.strip():
            return value.strip()
    return None
