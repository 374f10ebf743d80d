"""The offline provider on the shipped playbooks: Dutch and English demo conversations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from activities.llm.offline import (
    OfflineProvider,
    extract_cars,
    extract_money,
    offline_provider,
)
from models.agent import (
    AnalyseInput,
    Analysis,
    CompanyFacts,
    FieldValue,
    GenerateReplyInput,
    KnowledgeHit,
    WriteEmailInput,
)
from models.common import Intent, Priority, ReplyPurpose, Role, Stage
from models.messages import TranscriptEntry
from models.playbook import Playbook
from models.repo.playbooks import builtin_playbook
from models.settings import Settings

DEALER = builtin_playbook("car_dealership")
B2B = builtin_playbook("b2b_outreach")
AT = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


async def analyse(
    text: str,
    playbook: Playbook = DEALER,
    transcript: tuple[TranscriptEntry, ...] = (),
    known: dict[str, FieldValue] | None = None,
) -> Analysis:
    result = await OfflineProvider().analyse(
        AnalyseInput(
            tenant_id="t",
            playbook=playbook,
            transcript=transcript,
            new_messages=(text,),
            known_fields=known or {},
        )
    )
    assert result.usage.provider == "offline"
    assert result.usage.model == "rules-v1"
    assert result.usage.input_tokens >= len(text.split())
    return result.analysis


async def reply(
    analysis: Analysis | None,
    purpose: ReplyPurpose = ReplyPurpose.REPLY,
    *,
    playbook: Playbook = DEALER,
    known: dict[str, FieldValue] | None = None,
    knowledge: tuple[KnowledgeHit, ...] = (),
    transcript: tuple[TranscriptEntry, ...] = (),
    contact_name: str | None = "Jan de Vries",
    language: str | None = None,
    follow_up_number: int = 0,
) -> str:
    result = await OfflineProvider().generate_reply(
        GenerateReplyInput(
            tenant_id="t",
            playbook=playbook,
            purpose=purpose,
            stage=Stage.QUALIFYING,
            transcript=transcript,
            analysis=analysis,
            knowledge=knowledge,
            known_fields=known or {},
            contact_name=contact_name,
            language=language,
            follow_up_number=follow_up_number,
        )
    )
    assert result.usage.provider == "offline"
    assert result.usage.output_tokens > 0
    return result.text


# ---------------------------------------------------------------- analysis


async def test_dutch_product_inquiry_extracts_car_fuel_and_budget() -> None:
    a = await analyse("Hoi, ik zoek een Volkswagen Golf diesel, budget €25.000")
    assert a.language == "nl"
    assert a.intent == Intent.PRODUCT_INQUIRY
    assert Intent.GREETING in a.secondary_intents
    assert a.fields["make"] == "Volkswagen"
    assert a.fields["model"] == "Golf"
    assert a.fields["fuel_type"] == "diesel"
    assert a.fields["budget"] == 25000
    assert not a.escalate
    assert a.confidence >= 0.6


async def test_english_test_drive_request_is_a_meeting_with_urgency() -> None:
    a = await analyse(
        "Hi, I'm looking for a Toyota Yaris hybrid, around 25k. Can I test drive it this week?"
    )
    assert a.language == "en"
    assert a.intent == Intent.MEETING
    assert Intent.PRODUCT_INQUIRY in a.secondary_intents
    assert (a.fields["make"], a.fields["model"]) == ("Toyota", "Yaris")
    assert a.fields["fuel_type"] == "hybrid"
    assert a.fields["budget"] == 25000
    assert a.fields["timeline"] == "this week"
    assert a.fields["urgency"] is True
    # meeting is HIGH in the playbook; urgency bumps it one level
    assert a.priority == Priority.URGENT


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("budget €25.000", 25000),
        ("ongeveer 25k", 25000),
        ("25.000 euro", 25000),
        ("a budget of 30000", 30000),
        ("€ 18.500,-", 18500),
        ("between 20k and 27,5k", 27500),
        ("max 22.000", 22000),
        ("€25,000", 25000),
    ],
)
def test_budget_formats(text: str, budget: int) -> None:
    assert extract_money(text) == {"budget": budget}


@pytest.mark.parametrize(
    "text",
    ["max 20.000 km", "niet ouder dan 2019", "tot 2020", "3 deuren en 150 pk", "5 jaar garantie"],
)
def test_mileage_years_and_specs_are_not_money(text: str) -> None:
    assert extract_money(text) == {}


def test_monthly_amounts_are_kept_apart_from_the_budget() -> None:
    assert extract_money("kan ik €300 per maand betalen?") == {"monthly_budget": 300}


def test_current_car_is_the_trade_in_not_the_wanted_car() -> None:
    fields = extract_cars("Ik wil mijn Opel Corsa inruilen voor een Golf")
    assert fields == {"trade_in_vehicle": "Opel Corsa", "make": "Volkswagen", "model": "Golf"}
    fields = extract_cars("I'd like to trade in my Ford Fiesta for a BMW X5")
    assert fields == {"trade_in_vehicle": "Ford Fiesta", "make": "BMW", "model": "X5"}


async def test_trade_in_message() -> None:
    a = await analyse("Ik wil mijn Opel Corsa inruilen voor een Golf")
    assert a.intent == Intent.TRADE_IN
    assert a.fields["trade_in"] is True
    assert a.fields["trade_in_vehicle"] == "Opel Corsa"
    assert a.fields["make"] == "Volkswagen"


async def test_ordinary_financing_question_does_not_escalate() -> None:
    a = await analyse("Kan ik deze auto ook financieren?")
    assert a.intent == Intent.FINANCING
    assert a.fields["financing"] is True
    assert not a.escalate


async def test_complex_financing_escalates_to_finance() -> None:
    a = await analyse("Kan ik de auto financieren? Ik ben zzp'er en heb een BKR registratie")
    assert a.intent == Intent.FINANCING
    assert a.escalate
    assert a.escalation_rule == "complex_financing"
    assert a.escalation_reason is not None and "bkr" in a.escalation_reason.lower()
    assert a.priority in (Priority.HIGH, Priority.URGENT)


async def test_large_financing_escalates_on_the_known_budget() -> None:
    a = await analyse("Can I finance it?", known={"budget": 65000})
    assert a.escalate and a.escalation_rule == "large_financing"
    small = await analyse("Can I finance it?", known={"budget": 20000})
    assert not small.escalate


async def test_complaint_escalates_with_negative_sentiment() -> None:
    a = await analyse("Ik ben echt ontevreden, de auto is na een week al kapot!")
    assert a.intent == Intent.COMPLAINT
    assert a.escalate and a.escalation_rule == "complaint"
    assert a.sentiment < 0


async def test_human_request_escalates() -> None:
    a = await analyse("Can I talk to someone? A real person please")
    assert a.language == "en"
    assert a.intent == Intent.HUMAN_REQUEST
    assert a.escalate and a.escalation_rule == "human_request"


async def test_long_message_nothing_matches_is_low_confidence_and_escalates() -> None:
    a = await analyse("Mijn schoonmoeder heeft gisteren taart gebakken en de kat zat op het dak")
    assert a.intent == Intent.OTHER
    assert a.confidence < 0.3
    assert a.escalate and a.escalation_rule == "low_confidence"


async def test_short_acknowledgement_is_not_escalated() -> None:
    a = await analyse("ok")
    assert a.intent == Intent.OTHER
    assert 0.3 <= a.confidence < 0.6
    assert not a.escalate


async def test_not_interested_and_opt_out() -> None:
    a = await analyse("Geen interesse meer, ik heb al een auto gekocht")
    assert a.intent == Intent.NOT_INTERESTED
    assert a.priority == Priority.LOW
    stop = await analyse("Stop, afmelden graag")
    assert stop.intent == Intent.NOT_INTERESTED
    assert stop.fields["opt_out"] is True


async def test_yes_no_answer_fills_the_question_just_asked() -> None:
    asked = TranscriptEntry(role=Role.AI, text="Top! Heb je een auto die je wilt inruilen?", at=AT)
    no = await analyse("Nee", transcript=(asked,))
    assert no.fields["trade_in"] is False
    yes = await analyse("Ja", transcript=(asked,))
    assert yes.fields["trade_in"] is True


async def test_language_of_a_bare_message_follows_the_conversation() -> None:
    earlier = TranscriptEntry(role=Role.LEAD, text="Hi, I am looking for a car", at=AT)
    a = await analyse("Golf, 25k", transcript=(earlier,))
    assert a.language == "en"
    a_nl = await analyse("Golf, 25k")
    assert a_nl.language == "nl"  # the dealership's default language


async def test_b2b_fields_email_phone_company_team_size() -> None:
    a = await analyse(
        "Hi, this is Jane Smith from Acme Corp. We have 40 employees. "
        "Call me at +31 6 1234 5678 or jane@acme.com",
        playbook=B2B,
    )
    assert a.intent == Intent.MEETING
    assert a.fields["email"] == "jane@acme.com"
    assert a.fields["phone"] == "+31612345678"
    assert a.fields["company"] == "Acme Corp"
    assert a.fields["team_size"] == 40
    assert a.fields["name"] == "Jane Smith"
    # fields the B2B playbook does not declare are not returned
    assert "make" not in a.fields and "fuel_type" not in a.fields


# ---------------------------------------------------------------- replies


async def test_dutch_reply_confirms_details_and_asks_the_next_missing_field() -> None:
    a = await analyse("Hoi, ik zoek een Volkswagen Golf diesel, budget €25.000")
    text = await reply(a)
    assert text.startswith("Hoi Jan!")
    assert "de Volkswagen Golf" in text
    assert "€25.000" in text
    # make, budget and fuel are known: the next question is about a trade-in
    assert text.endswith("Heb je een auto die je wilt inruilen?")
    assert "budget?" not in text


async def test_english_reply_asks_for_budget_when_missing() -> None:
    a = await analyse("Hello, is the Skoda Octavia still available?")
    text = await reply(a, contact_name=None)
    assert text.startswith("Hello!") or text.startswith("Hi!")
    assert "the Skoda Octavia" in text
    assert text.endswith("What budget do you have in mind?")


async def test_reply_asks_at_most_one_question() -> None:
    a = await analyse("Can I come by for a test drive of the Kia Niro?")
    text = await reply(a)
    assert text.count("?") == 1
    assert text.endswith("Which day and time suit you best?")


async def test_reply_cites_the_knowledge_hit() -> None:
    a = await analyse("Wat zijn de openingstijden voor een proefrit?")
    hit = KnowledgeHit(
        document_id="d1",
        title="Proefrit maken",
        snippet="Een proefrit kan van maandag tot en met zaterdag, zonder afspraak.",
        score=1.0,
    )
    text = await reply(a, knowledge=(hit,))
    assert "Proefrit maken" in text
    assert "maandag tot en met zaterdag, zonder afspraak." in text


async def test_escalated_reply_and_not_interested_ask_nothing() -> None:
    complaint = await analyse("Ik ben echt ontevreden, de auto is kapot")
    assert "?" not in await reply(complaint)
    gone = await analyse("No thanks, not interested anymore")
    text = await reply(gone)
    assert "?" not in text
    assert "No problem" in text


async def test_low_confidence_reply_asks_to_clarify() -> None:
    a = await analyse("Mijn schoonmoeder heeft gisteren taart gebakken en de kat zat op het dak")
    text = await reply(a)
    assert "niet zeker of ik je goed begrijp" in text


async def test_other_purposes_use_their_templates_in_the_lead_language() -> None:
    a = await analyse("Ik ben echt ontevreden, de auto is kapot")
    notice = await reply(a, ReplyPurpose.ESCALATION_NOTICE)
    assert "bedrijfsleider" in notice  # the complaint-specific notice
    holding = await reply(a, ReplyPurpose.HOLDING, language="en")
    assert holding.startswith("Sorry for the wait")
    outreach = await reply(None, ReplyPurpose.OUTREACH, language="nl")
    assert "Sanne" in outreach and "Autohuis Van Dijk" in outreach
    assert outreach.endswith("Naar welk merk en model ben je op zoek?")
    first = await reply(None, ReplyPurpose.FOLLOW_UP, language="en", follow_up_number=1)
    last = await reply(None, ReplyPurpose.FOLLOW_UP, language="en", follow_up_number=3)
    assert first != last
    assert "last message" in last and "?" not in last


async def test_specialist_alert_names_rule_reason_and_last_message() -> None:
    text_in = "Ik wil financieren maar ik ben zzp'er, kan dat? Budget 30k voor een Audi A4"
    a = await analyse(text_in)
    transcript = (TranscriptEntry(role=Role.LEAD, text=text_in, at=AT),)
    alert = await reply(a, ReplyPurpose.SPECIALIST_ALERT, transcript=transcript, language="en")
    # for the dealership's staff: its default language (Dutch), whatever the lead's language
    assert "Overname gevraagd (complex_financing)" in alert
    assert "Jan de Vries" in alert
    assert "Audi A4" in alert and "€30.000" in alert
    assert text_in in alert


async def test_follow_up_does_not_repeat_a_question_asked_twice() -> None:
    q = "Heb je een auto die je wilt inruilen?"
    transcript = tuple(TranscriptEntry(role=Role.AI, text=q, at=AT) for _ in range(2))
    known: dict[str, FieldValue] = {"make": "Volkswagen", "budget": 20000, "fuel_type": "diesel"}
    text = await reply(
        None, ReplyPurpose.FOLLOW_UP, known=known, transcript=transcript, language="nl"
    )
    assert q not in text
    assert text.endswith("Wanneer zou je de auto ongeveer willen hebben?")


# ---------------------------------------------------------------- e-mail


async def test_email_is_grounded_on_the_facts_only() -> None:
    result = await OfflineProvider().write_email(
        WriteEmailInput(
            tenant_id="t",
            playbook=B2B,
            lead={"First Name": "Maria", "Last Name": "Jansen"},
            facts=CompanyFacts(
                company="Acme Logistics",
                website="https://acme.example",
                summary="Acme Logistics runs same-day freight across the Benelux. Since 1999.",
            ),
        )
    )
    assert result.subject == "Acme Logistics: more qualified meetings"
    assert result.body.startswith("Hi Maria,")
    assert '"Acme Logistics runs same-day freight across the Benelux."' in result.body
    assert "https://acme.example" in result.body
    assert "Since 1999" not in result.body  # only the first sentence is quoted
    assert "Northwind Growth" in result.body
    assert result.usage.provider == "offline" and result.usage.output_tokens > 0


async def test_email_without_facts_invents_nothing() -> None:
    result = await OfflineProvider().write_email(
        WriteEmailInput(tenant_id="t", playbook=B2B, lead={}, facts=CompanyFacts())
    )
    assert result.subject == "A quick question"
    assert result.body.startswith("Hello,")
    assert "reading about" not in result.body
    assert "None" not in result.body and "{" not in result.body
    assert "\n\n\n" not in result.body


def test_factory_builds_the_provider() -> None:
    provider = offline_provider(Settings(), None)  # type: ignore[arg-type]
    assert isinstance(provider, OfflineProvider)
    assert provider.name == "offline"


LOCATION = KnowledgeHit(
    document_id="doc-location",
    title="Location",
    snippet="We are at Industrieweg 12 in Utrecht, next to the A2 exit.",
    score=1.0,
)


async def test_an_unrecognised_question_with_a_knowledge_answer_is_answered_not_escalated() -> None:
    provider = OfflineProvider()
    question = "Where exactly are you located these days?"
    without = await provider.analyse(
        AnalyseInput(tenant_id="t", playbook=DEALER, transcript=(), new_messages=(question,))
    )
    assert without.analysis.escalate, "no rule and no knowledge: a human should look"

    result = await provider.analyse(
        AnalyseInput(
            tenant_id="t",
            playbook=DEALER,
            transcript=(),
            new_messages=(question,),
            knowledge=(LOCATION,),
        )
    )
    assert not result.analysis.escalate
    reply = await provider.generate_reply(
        GenerateReplyInput(
            tenant_id="t",
            playbook=DEALER,
            purpose=ReplyPurpose.REPLY,
            stage=Stage.QUALIFYING,
            analysis=result.analysis,
            knowledge=(LOCATION,),
        )
    )
    assert "Industrieweg 12" in reply.text
