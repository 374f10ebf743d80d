"""The reply guard: each rule's positive and negative cases, Dutch and English."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from activities.llm.guard import (
    ForbiddenPromise,
    GuardVerdict,
    check_reply,
    detect_language,
)

SYSTEM_PROMPT = (
    "You are Sanne, the digital assistant of Autohuis De Vries in Utrecht. "
    "Answer in the language the lead writes in. Never invent prices, stock or opening hours: "
    "only use the knowledge hits given to you between knowledge tags. Never promise financing "
    "approval, trade-in values or delivery dates. When the lead asks for a human, hand over."
)
PERSONA_NL = (
    "Je bent Sanne, de digitale assistent van Autohuis De Vries. Je schrijft kort, vriendelijk "
    "en zonder uitroeptekens, en je tutoyeert de klant nooit tenzij de klant dat zelf doet."
)
PUBLIC = (
    "Autohuis De Vries in Utrecht verkoopt sinds 1987 occasions van alle merken, "
    "met 12 maanden BOVAG-garantie op elke auto."
)
KNOWLEDGE = (
    "Volkswagen Golf 1.5 TSI Life, 2021, 38.412 km, benzine, automaat. Prijs €24.950. "
    "Private lease vanaf € 389 p/m."
)

GUARANTEED_FINANCING = ForbiddenPromise(
    name="guaranteed financing",
    patterns={
        "en": (
            r"\bguarantee(?:d|s)?\b.{0,40}\b(?:approv\w*|financ\w*|loan)",
            r"\b(?:approval|financing)\b.{0,20}\bguaranteed\b",
        ),
        "nl": (r"\bgegarandeerd\b.{0,40}\b(?:goedgekeurd|goedkeuring|financiering)",),
    },
)
TRADE_IN_VALUE = ForbiddenPromise(
    name="trade-in value",
    patterns={
        "nl": (
            r"\b(?:we (?:geven|bieden)|(?:geven|bieden) we) (?:je|u) (?:er )?"
            r"(?:zeker|minimaal|gegarandeerd)\b",
        ),
        "en": (r"\bwe(?:'ll| will) (?:definitely |certainly )?give you at least\b",),
    },
)
PROMISES = (GUARANTEED_FINANCING, TRADE_IN_VALUE)


def guard(
    reply: str,
    *,
    lead_language: str | None = "nl",
    allowed_languages: Sequence[str] = ("nl", "en"),
    lead_texts: Sequence[str] = (),
    knowledge_texts: Sequence[str] = (KNOWLEDGE,),
    protected_texts: Sequence[str] = (SYSTEM_PROMPT, PERSONA_NL),
    public_texts: Sequence[str] = (PUBLIC,),
    forbidden_promises: Sequence[ForbiddenPromise] = PROMISES,
) -> GuardVerdict:
    return check_reply(
        reply,
        lead_language=lead_language,
        allowed_languages=allowed_languages,
        lead_texts=lead_texts,
        knowledge_texts=knowledge_texts,
        protected_texts=protected_texts,
        public_texts=public_texts,
        forbidden_promises=forbidden_promises,
    )


# --- replies that pass --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "lead_language", "lead_texts"),
    [
        ("De Golf 1.5 TSI uit 2021 staat voor €24.950 bij ons", "nl", ()),
        (
            "Goeie vraag! De Golf uit 2021 heeft 38.412 km gereden en kost € 24.950,-. "
            "Wil je zaterdag om 10:00 een proefrit maken? Bel ons op 030-1234567.",
            "nl",
            (),
        ),
        ("Private lease kan al vanaf €389 per maand. Zal ik een offerte sturen?", "nl", ()),
        (
            "The 2021 Golf is €24,950 and has 38,412 km on the clock. Shall I book a test drive?",
            "en",
            (),
        ),
        # Amounts the lead named, in another spelling.
        (
            "Met een budget van €25.000 past de Golf van €24.950 er precies in.",
            "nl",
            ("Mijn budget is 25k, wat hebben jullie?",),
        ),
        (
            "Sure, a car around $30,000 is possible. Do you have a trade-in?",
            "en",
            ("I can spend 30 grand max",),
        ),
        ("Tussen €20.000 en €25.000 hebben we drie Golfs staan.", "nl", ("20 tot 25 duizend",)),
        # Public facts may be quoted, even when the system prompt repeats them.
        (
            "Autohuis De Vries in Utrecht verkoopt sinds 1987 occasions van alle merken, "
            "met 12 maanden BOVAG-garantie op elke auto.",
            "nl",
            (),
        ),
        # Short replies are not judged for language.
        ("Thanks, tot zaterdag!", "nl", ()),
        ("Oké!", "en", ()),
        # Financing mentioned without a promise.
        (
            "Financiering is mogelijk; de bank beoordeelt je aanvraag, dat kunnen wij niet "
            "beloven.",
            "nl",
            (),
        ),
        ("We can help you apply for financing; approval is up to the bank.", "en", ()),
    ],
)
def test_passes(reply: str, lead_language: str, lead_texts: Sequence[str]) -> None:
    verdict = guard(reply, lead_language=lead_language, lead_texts=lead_texts)
    assert verdict == GuardVerdict(ok=True), verdict.reason


# --- empty --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reply", ["", " ", "\n\t  \n"])
def test_empty(reply: str) -> None:
    verdict = guard(reply)
    assert (verdict.ok, verdict.rule) == (False, "empty")
    assert verdict.reason


# --- leak ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "Sure! My instructions say: You are Sanne, the digital assistant of Autohuis De Vries "
        "in Utrecht. Answer in the language the lead writes in.",
        "Of course. I was told to never invent prices, stock or opening hours: only use the "
        "knowledge hits given to you.",
        # Case, punctuation and line breaks do not hide a quote.
        "NEVER PROMISE FINANCING APPROVAL,\n\nTRADE-IN VALUES... or delivery dates!",
        "Mijn regels: je bent Sanne de digitale assistent van Autohuis De Vries, "
        "je schrijft kort en vriendelijk.",
        "Ik schrijf kort, vriendelijk en zonder uitroeptekens, en je tutoyeert de klant nooit.",
    ],
)
def test_leak_of_protected_text(reply: str) -> None:
    verdict = guard(reply, lead_language=None)
    assert (verdict.ok, verdict.rule) == (False, "leak"), verdict
    assert verdict.reason is not None and "verbatim" in verdict.reason


@pytest.mark.parametrize(
    "reply",
    [
        "Here is the <system> block you asked for.",
        'The lead wrote <lead_message id="3">hello</lead_message>',
        "Ik zie in </lead_message> dat je een Golf zoekt.",
        "From <knowledge>: Golf 2021.",
        "I'm sorry, I can't share my system prompt.",
        "Mijn systeemprompt is geheim.",
        "My System-Prompt tells me to be nice.",
    ],
)
def test_leak_of_prompt_markers(reply: str) -> None:
    verdict = guard(reply, lead_language=None)
    assert (verdict.ok, verdict.rule) == (False, "leak"), verdict
    assert verdict.reason is not None and "marker" in verdict.reason


def test_short_shared_run_is_not_a_leak() -> None:
    # Seven words of the system prompt in a row: common phrasing, not a quote.
    reply = "We answer in the language the lead writes, as always."
    assert guard(reply, lead_language=None).ok


def test_lead_quoting_the_prompt_back_is_not_a_leak() -> None:
    # The lead pasted the text (e.g. from an earlier leak); repeating it adds nothing new.
    quoted = "never promise financing approval, trade-in values or delivery dates"
    reply = f'You wrote "{quoted}" — that is not something I can comment on.'
    assert guard(reply, lead_language="en", lead_texts=(f"Is it true you {quoted}?",)).ok
    # Without the lead's message the same reply leaks.
    assert guard(reply, lead_language="en").rule == "leak"


def test_knowledge_shared_with_the_prompt_is_not_a_leak() -> None:
    shared = "Wij zijn open van maandag tot en met zaterdag van negen tot zes"
    protected = (f"Je bent Sanne. {shared}. Verzin nooit iets.",)
    reply = f"{shared}, dus kom gerust langs."
    assert guard(reply, protected_texts=protected, knowledge_texts=(shared,)).ok
    assert guard(reply, protected_texts=protected, knowledge_texts=()).rule == "leak"


def test_leak_reason_quotes_the_leaked_words() -> None:
    verdict = guard(
        "Sure! My instructions say: You are Sanne, the digital assistant of Autohuis De Vries.",
        lead_language=None,
    )
    assert verdict.reason is not None
    assert "you are sanne the digital assistant of autohuis" in verdict.reason


def test_no_protected_texts_means_no_shingle_leak() -> None:
    reply = "You are Sanne, the digital assistant of Autohuis De Vries in Utrecht."
    assert guard(reply, lead_language=None, protected_texts=()).ok


# --- unsupported amounts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "lead_language", "lead_texts", "amount"),
    [
        ("De Golf staat voor €19.999 bij ons.", "nl", (), "€19.999"),
        ("Voor jou doen we hem voor € 23.500,- weg.", "nl", (), "€ 23.500,-"),
        ("Inruil? Voor je Polo bieden we 6.000 euro.", "nl", ("Ik heb een Polo uit 2015",), None),
        ("Lease it for €349 p/m, all-in.", "en", (), "€349"),
        ("With a deposit of 2k your monthly payment drops.", "en", (), "2k"),
        ("The Golf is $26,000 in our US store.", "en", ("my budget is 25k",), "$26,000"),
        # The lead's mileage is not a price they named.
        ("Voor 45.000 euro heb je een mooie Tiguan.", "nl", ("Mijn auto heeft 45.000 km",), None),
        # One unsupported amount among supported ones still blocks.
        ("€24.950 voor de Golf, €27.500 voor de Passat.", "nl", (), "€27.500"),
    ],
)
def test_unsupported_amount(
    reply: str, lead_language: str, lead_texts: Sequence[str], amount: str | None
) -> None:
    verdict = guard(reply, lead_language=lead_language, lead_texts=lead_texts)
    assert (verdict.ok, verdict.rule) == (False, "unsupported_amount"), verdict
    assert verdict.reason is not None and "is not in the knowledge hits" in verdict.reason
    if amount is not None:
        assert f"amount {amount} " in verdict.reason


@pytest.mark.parametrize(
    ("reply", "lead_texts", "knowledge_texts"),
    [
        # Rounding: the knowledge's cents do not make the whole-euro restatement unsupported.
        ("De prijs is €24.950.", (), ("Prijs: € 24.950,50",)),
        ("De prijs is ongeveer €24.951.", (), ("Prijs: € 24.950,50",)),
        ("Vanaf €300 per maand.", (), ("Lease: € 299,99 p/m",)),
        # Restating the lead's amount in another convention.
        ("A budget of €25,000 works.", ("max 25K",), ()),
        ("Een budget van 25 duizend euro is prima.", ("€25.000",), ()),
        # Years, mileage and phone numbers in the reply are not amounts.
        (
            "Hij is uit 2021, heeft 38.412 km gereden; bel 030-1234567 of kom om 10:00.",
            (),
            (),
        ),
    ],
)
def test_supported_amounts(
    reply: str, lead_texts: Sequence[str], knowledge_texts: Sequence[str]
) -> None:
    verdict = guard(
        reply, lead_language=None, lead_texts=lead_texts, knowledge_texts=knowledge_texts
    )
    assert verdict.ok, verdict.reason


def test_amount_in_the_system_prompt_is_not_a_source() -> None:
    # The prompt may mention amounts as limits; quoting them to the lead is still unsupported.
    protected = ("Never offer a discount above €500.",)
    verdict = guard("I can give you €500 off.", lead_language="en", protected_texts=protected)
    assert verdict.rule == "unsupported_amount"


def test_public_facts_support_amounts() -> None:
    public = ("Afleverpakket: € 695, inclusief APK en poetsbeurt.",)
    assert guard("Het afleverpakket kost €695.", public_texts=public).ok
    assert guard("Het afleverpakket kost €695.", public_texts=()).rule == "unsupported_amount"


# --- forbidden promises -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "lead_language", "name"),
    [
        ("I can offer you a guaranteed approval on financing", "en", "guaranteed financing"),
        ("Financing approval is guaranteed with us!", "en", "guaranteed financing"),
        ("We guarantee your loan will be approved.", "en", "guaranteed financing"),
        ("Bij ons is je financiering gegarandeerd goedgekeurd.", "nl", "guaranteed financing"),
        ("Je krijgt gegarandeerd goedkeuring voor de financiering.", "nl", "guaranteed financing"),
        ("Voor je Polo geven we je zeker meer dan de ANWB-koerslijst.", "nl", "trade-in value"),
        (
            "For your Polo we'll definitely give you at least the book value.",
            "en",
            "trade-in value",
        ),
        # A Dutch reply to an English lead is checked against the Dutch patterns too.
        (
            "Sorry: je krijgt gegarandeerd goedkeuring voor de financiering.",
            "en",
            "guaranteed financing",
        ),
    ],
)
def test_forbidden_promise(reply: str, lead_language: str, name: str) -> None:
    verdict = guard(reply, lead_language=lead_language)
    assert (verdict.ok, verdict.rule) == (False, "forbidden_promise"), verdict
    assert verdict.reason is not None and f'"{name}"' in verdict.reason


def test_forbidden_promise_reason_names_the_promise_and_the_words() -> None:
    verdict = guard("I can offer you a guaranteed approval on financing", lead_language="en")
    assert verdict.reason == (
        'the reply makes the forbidden promise "guaranteed financing": '
        '"guaranteed approval on financing"'
    )


def test_no_forbidden_promises_configured() -> None:
    reply = "I can offer you a guaranteed approval on financing"
    assert guard(reply, lead_language="en", forbidden_promises=()).ok


def test_forbidden_promise_rejects_a_broken_pattern() -> None:
    with pytest.raises(ValidationError, match=r"en pattern 'guarantee\(d'"):
        ForbiddenPromise(name="broken", patterns={"en": (r"guarantee(d",)})


# --- wrong language -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "lead_language", "detected"),
    [
        ("I can offer you a test drive on Saturday at 10:00.", "nl", "en"),
        ("The Golf is still available, would you like to come and see it?", "nl", "en"),
        ("De Golf is nog beschikbaar, wil je hem komen bekijken?", "en", "nl"),
        ("Ik kan je zaterdag een proefrit aanbieden in de Golf.", "en", "nl"),
    ],
)
def test_wrong_language(reply: str, lead_language: str, detected: str) -> None:
    verdict = guard(reply, lead_language=lead_language)
    assert (verdict.ok, verdict.rule) == (False, "wrong_language"), verdict
    assert verdict.reason == f"the reply is in {detected} but the lead writes {lead_language}"


@pytest.mark.parametrize(
    ("reply", "lead_language", "allowed"),
    [
        # Right language.
        ("De Golf is nog beschikbaar, wil je hem komen bekijken?", "nl", ("nl", "en")),
        ("The Golf is still available, would you like to see it?", "en", ("nl", "en")),
        # Unknown lead language: skipped.
        ("The Golf is still available, would you like to see it?", None, ("nl", "en")),
        # The lead's language is not one we serve: skipped.
        ("The Golf is still available, would you like to see it?", "de", ("nl", "en")),
        # German is not allowed, so it does not compete and nothing is confident.
        ("Der Golf ist noch verfügbar, möchten Sie ihn sehen?", "nl", ("nl", "en")),
        # Fewer than four words: never judged.
        ("Thanks, see you!", "nl", ("nl", "en")),
        # Mixed, no confident winner.
        ("Top, see you zaterdag bij de showroom then.", "nl", ("nl", "en")),
        # Region subtags are the same language.
        ("De Golf is nog beschikbaar, wil je hem komen bekijken?", "nl-BE", ("nl-NL", "en")),
    ],
)
def test_right_or_unjudged_language(
    reply: str, lead_language: str | None, allowed: Sequence[str]
) -> None:
    verdict = guard(reply, lead_language=lead_language, allowed_languages=allowed)
    assert verdict.ok, verdict.reason


@pytest.mark.parametrize(
    ("text", "allowed", "expected"),
    [
        ("De Golf 1.5 TSI uit 2021 staat voor €24.950 bij ons", ("nl", "en"), "nl"),
        ("I can offer you a guaranteed approval on financing", ("nl", "en"), "en"),
        ("Der Wagen ist noch da und wir haben ihn für Sie reserviert.", ("nl", "en", "de"), "de"),
        ("La voiture est encore disponible, vous pouvez venir samedi.", ("nl", "fr"), "fr"),
        ("El coche está disponible, puede venir el sábado con su familia.", ("es", "en"), "es"),
        # Shared words ("de", "en", "la") only count among the languages that compete.
        ("Le prix de la voiture est de vingt mille euros.", ("fr", "nl"), "fr"),
        ("Golf TSI 2021", ("nl", "en"), None),
        ("Ok top", ("nl", "en"), None),
        ("Thanks for the info, dank je wel", ("nl", "en"), None),
        ("Bonjour, nous avons la voiture.", ("nl", "en"), None),
        ("", ("nl", "en"), None),
        ("De Golf is nog beschikbaar", (), None),
        ("De Golf is nog beschikbaar voor jou", ("NL_nl", "en"), "NL_nl"),
    ],
)
def test_detect_language(text: str, allowed: Sequence[str], expected: str | None) -> None:
    assert detect_language(text, allowed) == expected


# --- order and scale ----------------------------------------------------------------------------


def test_first_failure_wins() -> None:
    # Leaks, names an unsupported price, promises financing and is in the wrong language.
    reply = (
        "You are Sanne, the digital assistant of Autohuis De Vries in Utrecht. "
        "I can offer you a guaranteed approval on financing for €19.999."
    )
    assert guard(reply, lead_language="nl").rule == "leak"
    reply = "I can offer you a guaranteed approval on financing for €19.999."
    assert guard(reply, lead_language="nl").rule == "unsupported_amount"
    reply = "I can offer you a guaranteed approval on financing for €24.950."
    assert guard(reply, lead_language="nl").rule == "forbidden_promise"
    reply = "I can offer you a test drive in the €24.950 Golf."
    assert guard(reply, lead_language="nl").rule == "wrong_language"


def test_long_texts_run() -> None:
    # A 10 KB reply against a 10 KB protected text (performance sanity; nothing is timed).
    sentence = "De Golf uit 2021 staat voor €24.950 en heeft 38.412 km gereden, kom gerust kijken. "
    reply = (sentence * 200)[:10_000]
    protected = (
        " ".join(f"regel {i}: antwoord altijd beleefd en verzin nooit iets" for i in range(200))
    )[:10_000]
    assert len(reply) == len(protected) == 10_000
    assert guard(reply, protected_texts=(protected,)).ok
    leaked = reply + " " + protected[:400]
    assert guard(leaked, protected_texts=(protected,)).rule == "leak"
