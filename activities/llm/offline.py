"""The `offline` LLM provider: deterministic rules and templates, no network, no model.

It is the embedded default so that leadflow runs end to end with no setup, and it says what it
is: usage reports provider "offline", model "rules-v1", and token counts that are a word-count
estimate. Everything it knows comes from the playbook (intent keywords, fields, escalation rules,
templates) plus the small word lists below (languages, car makes, fuel types, money amounts).
It never states a fact it was not given: prices, stock and company details only appear when a
knowledge hit, the lead or enrichment supplied them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import httpx

from models.agent import (
    AnalyseInput,
    Analysis,
    AnalysisResult,
    FieldValue,
    GeneratedReply,
    GenerateReplyInput,
    TokenUsage,
    WriteEmailInput,
    WrittenEmail,
)
from models.common import Intent, Priority, ReplyPurpose, Role
from models.messages import TranscriptEntry
from models.playbook import EscalationRule, Playbook
from models.settings import Settings

PROVIDER_NAME = "offline"
MODEL_NAME = "rules-v1"

# --- confidence levels (named so the playbooks' `confidence_below` values have a reference) ---
CONFIDENCE_NOTHING_MATCHED = 0.2  # a longer message no rule understood: worth a human look
CONFIDENCE_SHORT_UNMATCHED = 0.4  # "ok", "👍": nothing to misunderstand
CONFIDENCE_FIELDS_ONLY = 0.55  # no intent words, but it answered a question (budget, a car)
CONFIDENCE_KNOWLEDGE_ONLY = 0.5  # no intent words, but the knowledge base matched the question
CONFIDENCE_PER_KEYWORD = 0.15
CONFIDENCE_BASE = 0.55
CONFIDENCE_MAX = 0.95

# Ties between intents go to the one that needs the most care.
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
# The lead wants no sales question after these.
NO_QUESTION_INTENTS = frozenset({Intent.COMPLAINT, Intent.HUMAN_REQUEST, Intent.NOT_INTERESTED})
# Fields that are not shown back to the lead in "I've noted: ...".
UNDISPLAYED_FIELDS = frozenset({"model", "urgency", "name", "opt_out"})
# Control fields kept even when a playbook does not declare them.
CONTROL_FIELDS = frozenset({"opt_out"})

# ---------------------------------------------------------------- language detection
_LANGUAGE_WORDS: dict[str, frozenset[str]] = {
    "nl": frozenset(
        """de het een ik je jij jouw u uw wij jullie niet wat hoe waar wanneer welke voor met van
        naar graag zoek zoeken heb hebt heeft hebben wil wilt willen kan kun kunnen deze dit dat
        die er maar ook nog mijn hoi hallo bedankt dank ja nee goed prijs proefrit zijn zou
        zouden bij om te tot ongeveer rond kost graag auto welk wel geen al nu even leuk
        mooi""".split()
    ),
    "en": frozenset(
        """the a an and i you your not what how where when which for with looking have has want
        wants would like can could this that these there my our please hi hello thanks thank
        yes no good price test drive are be do does it on at from about much is car any get
        need just some will we'd i'm i'd you're interested""".split()
    ),
}

# ---------------------------------------------------------------- car knowledge
_MAKES: dict[str, str] = {
    "volkswagen": "Volkswagen",
    "vw": "Volkswagen",
    "audi": "Audi",
    "bmw": "BMW",
    "mercedes-benz": "Mercedes-Benz",
    "mercedes benz": "Mercedes-Benz",
    "mercedes": "Mercedes-Benz",
    "opel": "Opel",
    "peugeot": "Peugeot",
    "renault": "Renault",
    "citroen": "Citroën",
    "citroën": "Citroën",
    "ford": "Ford",
    "toyota": "Toyota",
    "kia": "Kia",
    "hyundai": "Hyundai",
    "skoda": "Skoda",
    "škoda": "Skoda",
    "seat": "Seat",
    "cupra": "Cupra",
    "volvo": "Volvo",
    "tesla": "Tesla",
    "nissan": "Nissan",
    "mazda": "Mazda",
    "honda": "Honda",
    "fiat": "Fiat",
    "mini": "Mini",
    "porsche": "Porsche",
    "lexus": "Lexus",
    "suzuki": "Suzuki",
    "mitsubishi": "Mitsubishi",
    "dacia": "Dacia",
    "jeep": "Jeep",
    "land rover": "Land Rover",
    "range rover": "Range Rover",
    "jaguar": "Jaguar",
    "polestar": "Polestar",
    "byd": "BYD",
    "mg": "MG",
    "lynk & co": "Lynk & Co",
    "alfa romeo": "Alfa Romeo",
    "subaru": "Subaru",
    "smart": "Smart",
}
# Popular models named without their make ("ik zoek een Golf").
_MODELS: dict[str, tuple[str, str]] = {
    "golf": ("Volkswagen", "Golf"),
    "polo": ("Volkswagen", "Polo"),
    "passat": ("Volkswagen", "Passat"),
    "tiguan": ("Volkswagen", "Tiguan"),
    "t-roc": ("Volkswagen", "T-Roc"),
    "id.3": ("Volkswagen", "ID.3"),
    "id.4": ("Volkswagen", "ID.4"),
    "corolla": ("Toyota", "Corolla"),
    "yaris": ("Toyota", "Yaris"),
    "aygo": ("Toyota", "Aygo"),
    "rav4": ("Toyota", "RAV4"),
    "c-hr": ("Toyota", "C-HR"),
    "octavia": ("Skoda", "Octavia"),
    "fabia": ("Skoda", "Fabia"),
    "superb": ("Skoda", "Superb"),
    "kodiaq": ("Skoda", "Kodiaq"),
    "enyaq": ("Skoda", "Enyaq"),
    "clio": ("Renault", "Clio"),
    "megane": ("Renault", "Megane"),
    "captur": ("Renault", "Captur"),
    "kuga": ("Ford", "Kuga"),
    "fiesta": ("Ford", "Fiesta"),
    "corsa": ("Opel", "Corsa"),
    "astra": ("Opel", "Astra"),
    "mokka": ("Opel", "Mokka"),
    "qashqai": ("Nissan", "Qashqai"),
    "juke": ("Nissan", "Juke"),
    "niro": ("Kia", "Niro"),
    "sportage": ("Kia", "Sportage"),
    "picanto": ("Kia", "Picanto"),
    "tucson": ("Hyundai", "Tucson"),
    "kona": ("Hyundai", "Kona"),
    "ioniq": ("Hyundai", "Ioniq"),
}
# Words after a make that are not a model name.
_NOT_A_MODEL = frozenset(
    """en of met die dat is in uit van voor op te and or with that which is in from for of the
    a an een de het diesel benzine elektrisch hybride petrol electric hybrid lpg inruilen
    trade kopen buy""".split()
)
# Read backwards from a car mention: which comes first decides whose car it is.
_OWNED_MARKERS = frozenset(
    "mijn my huidige current oude old inruil inruilen heb have rijd rij own".split()
)
_WANTED_MARKERS = frozenset(
    "voor for naar zoek zoeken looking want wil interesse interested nieuwe new kopen buy".split()
)

_FUEL_TYPES: tuple[tuple[str, str], ...] = (
    (r"plug-?in(?:\s+hybri\w*)?|phev|hybride|hybrid", "hybrid"),
    (r"volledig\s+elektrisch|elektrisch\w*|electric|ev|bev", "electric"),
    (r"diesel", "diesel"),
    (r"benzine|petrol|gasoline|gas", "petrol"),
    (r"lpg", "lpg"),
)
_FUEL_DISPLAY: dict[str, dict[str, str]] = {
    "nl": {"petrol": "benzine", "electric": "elektrisch", "hybrid": "hybride"},
}

# ---------------------------------------------------------------- other extraction patterns
_URGENT_PHRASES = (
    r"vandaag|morgen|deze week|zsm|z\.s\.m\.|zo snel mogelijk|met spoed|spoed|meteen|direct"
    r"|asap|a\.s\.a\.p\.|as soon as possible|urgent\w*|today|tomorrow|this week|right away"
)
_TIMELINE_PHRASES = (
    _URGENT_PHRASES + r"|volgende week|next week|deze maand|this month|volgende maand|next month"
    r"|binnen (?:\d+|een|twee|drie|zes) (?:weken|week|maanden|maand)"
    r"|within (?:\d+|a|one|two|three|six) (?:weeks?|months?)"
    r"|dit jaar|this year|na de zomer|after the summer|over (?:\d+|een|twee|drie) (?:weken|maanden)"
    r"|in (?:januari|februari|maart|april|mei|juni|juli|augustus|september|oktober|november"
    r"|december|january|february|march|may|june|july|august|october)"
)
_TIMELINE_RE = re.compile(rf"(?<!\w)(?:{_TIMELINE_PHRASES})(?!\w)", re.IGNORECASE)
_URGENT_RE = re.compile(rf"(?<!\w)(?:{_URGENT_PHRASES})(?!\w)", re.IGNORECASE)
_TRADE_IN_RE = re.compile(
    r"(?<!\w)(?:inruil\w*|trade[- ]?in|part[- ]exchange|ruilen)(?!\w)", re.IGNORECASE
)
_FINANCING_RE = re.compile(
    r"(?<!\w)(?:financ\w*|lease\w*|leasen|afbetal\w*|lening|loan|termijn\w*|instal+ments?"
    r"|monthly payments?|per maand|per month)(?!\w)",
    re.IGNORECASE,
)
_OPT_OUT_RE = re.compile(
    r"(?<!\w)(?:stop|afmelden|unsubscribe|remove me|geen berichten meer|niet meer benaderen"
    r"|don'?t contact|do not contact)(?!\w)",
    re.IGNORECASE,
)
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE_RE = re.compile(r"(?<![\w+])(?:(?:\+|00)\d|0\d)[\d\s\-()]{7,}\d(?!\w)")
_TEAM_SIZE_RE = re.compile(
    r"(?<![\w.,])(\d{1,6})\s*(?:\+\s*)?(?:medewerkers|werknemers|collega'?s|employees|people"
    r"|staff|fte|sales ?reps|reps|salespeople|verkopers)(?!\w)",
    re.IGNORECASE,
)
_COMPANY_RE = re.compile(
    r"(?i:\b(?:i work at|i work for|working at|we are|i'm from|i am from|from|at|ik werk bij"
    r"|werkzaam bij|namens|bij|our company is|my company is|company is|bedrijf is))\s+"
    r"([A-Z][\w&\-]*(?:\.[\w&\-]+)*(?:[ \t]+(?:[A-Z][\w&\-]*(?:\.[\w&\-]+)*|&))*)"
)
_NAME_RE = re.compile(
    r"(?i:\b(?:my name is|mijn naam is|ik heet|this is|met))\s+"
    r"([A-Z][a-zà-ÿ'\-]+(?:\s+[A-Z][a-zà-ÿ'\-]+)?)"
)
_YES_RE = re.compile(
    r"^\s*(?:ja|jawel|jazeker|zeker|klopt|graag|yes|yep|yeah|sure|correct)\b", re.IGNORECASE
)
_NO_RE = re.compile(r"^\s*(?:nee|neen|nope|no|geen|niet|nah|not really)\b", re.IGNORECASE)

# Money: a number with thousands separators or decimals, then what follows and precedes it.
_NUMBER_RE = re.compile(r"(?<![\w.,])(\d{1,3}(?:[.,]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d+)?)")
_THOUSANDS_AFTER = re.compile(r"^\s*(?:k|K|duizend|mille|thousand|grand)(?!\w)")
_CURRENCY_AFTER = re.compile(r"^\s*(?:,-\s*)?(?:€|euro'?s?|eur)(?!\w)", re.IGNORECASE)
_CURRENCY_BEFORE = re.compile(r"(?:€|\beur|\beuro)\s*$", re.IGNORECASE)
_BUDGET_WORD_BEFORE = re.compile(
    r"(?:budget|max|maximaal|maximum|hooguit|up to|at most|tot|around|rond|ongeveer|about|"
    r"zo'n|circa|ca\.)\b[^\d]{0,20}$",
    re.IGNORECASE,
)
_NOT_MONEY_AFTER = re.compile(
    r"^\s*(?:km|kilometer\w*|miles|mijl|pk|hp|kw|%|procent|percent|jaar|years?|maanden"
    r"|months?|weken|weeks?|dagen|days?|deuren|doors|medewerkers|employees|people|mensen|fte)"
    r"(?!\w)",
    re.IGNORECASE,
)
_MONTHLY_AFTER = re.compile(
    r"^[^\d]{0,12}?(?:per maand|p/m|p\.m\.|pm|per month|a month|/maand|/month|/mnd|per mnd"
    r"|monthly|maandelijks)(?!\w)",
    re.IGNORECASE,
)
_YEAR_RE = re.compile(r"^(?:19[5-9]\d|20[0-4]\d)$")

_WORD_RE = re.compile(r"[\w'\u2019]+(?:[.\-][\w]+)*", re.UNICODE)

# ---------------------------------------------------------------- positive / negative words
_POSITIVE = frozenset(
    """leuk mooi top prima goed geweldig super bedankt dank fijn perfect tevreden blij
    interessant great good nice perfect thanks thank love happy awesome excellent interested
    interesting glad""".split()
)
_NEGATIVE = frozenset(
    """slecht teleurgesteld boos kapot defect duur jammer vervelend ontevreden klacht
    schandalig waardeloos probleem problemen helaas oplichting bad disappointed angry broken
    expensive terrible awful unhappy complaint problem problems worst scam annoyed spam
    unfortunately""".split()
)
_NEGATIONS = frozenset("niet geen not no never nooit".split())

# ---------------------------------------------------------------- built-in templates
# Used when a playbook has no template for a key in the lead's language.
DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    "hello": {"nl": "Hoi", "en": "Hi"},
    "hello_named": {"nl": "Hoi {name}", "en": "Hi {name}"},
    "greeting": {
        "nl": "{hello}! Welkom bij {business}. Waarmee kan ik je helpen?",
        "en": "{hello}! Welcome to {business}. How can I help you?",
    },
    "product_inquiry": {
        "nl": "{hello}! Leuk dat je interesse hebt in {interest}.",
        "en": "{hello}! Great to hear you're interested in {interest}.",
    },
    "pricing": {
        "nl": "De prijs hangt af van je wensen; ik zoek het graag voor je uit.",
        "en": "The price depends on what you need; I'm happy to look into it for you.",
    },
    "objection": {
        "nl": "Ik begrijp dat de prijs belangrijk is. We kijken graag samen naar wat past.",
        "en": "I understand price matters. Let's look at what fits together.",
    },
    "financing": {
        "nl": "Er zijn verschillende betaalmogelijkheden; een collega kan je een voorstel doen.",
        "en": "There are several payment options; a colleague can make you an offer.",
    },
    "meeting": {
        "nl": "Een afspraak plannen we graag. Welke dag en tijd komen je het beste uit?",
        "en": "Happy to set up a meeting. Which day and time suit you best?",
    },
    "trade_in": {
        "nl": "Inruilen is bespreekbaar; een collega maakt graag een voorstel.",
        "en": "A trade-in is possible; a colleague is happy to make you an offer.",
    },
    "complaint": {
        "nl": "Wat vervelend dat je dit hebt meegemaakt. Ik geef het direct door.",
        "en": "I'm sorry to hear about this. I'm passing it on right away.",
    },
    "human_request": {
        "nl": "Natuurlijk, ik vraag een collega om contact met je op te nemen.",
        "en": "Of course, I'll ask a colleague to get in touch with you.",
    },
    "not_interested": {
        "nl": "Helemaal goed, bedankt voor je reactie!",
        "en": "No problem at all, thanks for letting us know!",
    },
    "other": {"nl": "Dank je voor je bericht!", "en": "Thanks for your message!"},
    "answer": {"nl": "Duidelijk, dank je!", "en": "Got it, thanks!"},
    "clarify": {
        "nl": "Ik weet niet zeker of ik je goed begrijp. Kun je iets meer vertellen?",
        "en": "I'm not sure I understand you correctly. Could you tell me a bit more?",
    },
    "interest_default": {"nl": "ons aanbod", "en": "what we offer"},
    "noted": {"nl": "Ik heb genoteerd: {details}.", "en": "I've noted: {details}."},
    "knowledge": {"nl": "{title}: {snippet}", "en": "{title}: {snippet}"},
    "next_step": {
        "nl": "Zullen we een afspraak maken?",
        "en": "Shall we set up a meeting?",
    },
    "outreach": {
        "nl": "{hello}! Dit is {assistant} van {business}.",
        "en": "{hello}! This is {assistant} from {business}.",
    },
    "follow_up": {
        "nl": "{hello}, ik wilde even checken of je nog vragen hebt.",
        "en": "{hello}, just checking whether you have any questions.",
    },
    "escalation_notice": {
        "nl": "Ik heb je bericht doorgezet naar een collega, die zo snel mogelijk reageert.",
        "en": "I've passed your message on to a colleague, who will reply as soon as possible.",
    },
    "holding": {
        "nl": "Excuses voor het wachten; we komen zo snel mogelijk bij je terug.",
        "en": "Sorry for the wait; we'll get back to you as soon as possible.",
    },
    "specialist_alert": {
        "nl": "[{business}] Overname gevraagd ({rule}): {reason}\nLead: {contact}\n"
        'Gegevens: {details}\nLaatste bericht: "{last_message}"',
        "en": "[{business}] Handover requested ({rule}): {reason}\nLead: {contact}\n"
        'Details: {details}\nLast message: "{last_message}"',
    },
    "email_subject": {"nl": "Een vraag voor {company}", "en": "A question for {company}"},
    "email_subject_generic": {"nl": "Een korte vraag", "en": "A quick question"},
    "email_body": {
        "nl": "{hello},\n\n{fact_line}\n\n{pitch}\n\nZou een kort gesprek nuttig zijn?\n\n"
        "Met vriendelijke groet,\n{assistant}\n{business}",
        "en": "{hello},\n\n{fact_line}\n\n{pitch}\n\nWould a short call be useful?\n\n"
        "Best regards,\n{assistant}\n{business}",
    },
    "email_fact": {
        "nl": 'Ik las over {company}{website_part}: "{fact}"',
        "en": 'I was reading about {company}{website_part}: "{fact}"',
    },
    "email_hello": {"nl": "Beste {name}", "en": "Hi {name}"},
    "email_hello_anonymous": {"nl": "Goedendag", "en": "Hello"},
    "your_company": {"nl": "jullie bedrijf", "en": "your company"},
    "no_details": {"nl": "(nog niets bekend)", "en": "(nothing known yet)"},
    "unknown_contact": {"nl": "onbekend", "en": "unknown"},
}


# ================================================================ small helpers


def estimate_tokens(*texts: str) -> int:
    """A word-count estimate (about 4 tokens per 3 words); no tokenizer is involved."""
    words = sum(len(t.split()) for t in texts)
    return math.ceil(words * 4 / 3)


def _usage(input_texts: Iterable[str], output_text: str) -> TokenUsage:
    return TokenUsage(
        provider=PROVIDER_NAME,
        model=MODEL_NAME,
        input_tokens=estimate_tokens(*input_texts),
        output_tokens=estimate_tokens(output_text),
    )


@lru_cache(maxsize=4096)
def _keyword_re(keyword: str) -> re.Pattern[str]:
    # Whole words; a trailing * matches any ending; spaces match any whitespace.
    stem = keyword.strip().lower()
    wildcard = stem.endswith("*")
    stem = stem.rstrip("*")
    body = r"\s+".join(re.escape(part) for part in stem.split())
    ending = r"\w*" if wildcard else ""
    return re.compile(rf"(?<!\w){body}{ending}(?!\w)", re.IGNORECASE)


def _matched_keywords(text: str, keywords: Mapping[str, Sequence[str]]) -> list[str]:
    found: list[str] = []
    for words in keywords.values():
        for keyword in words:
            if keyword and keyword not in found and _keyword_re(keyword).search(text):
                found.append(keyword)
    return found


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD_RE.findall(text)]


def detect_language(text: str, allowed: Sequence[str], fallback: str) -> str | None:
    """The allowed language with the most of its common words in `text`; None on a tie."""
    words = _words(text)
    counts = {
        lang: sum(1 for w in words if w in vocab)
        for lang, vocab in _LANGUAGE_WORDS.items()
        if lang in allowed
    }
    if not counts:
        return fallback if fallback in allowed else (allowed[0] if allowed else fallback)
    best = max(counts.values())
    leaders = [lang for lang, n in counts.items() if n == best]
    if best == 0 or len(leaders) > 1:
        return None
    return leaders[0]


def _lead_texts(transcript: Sequence[TranscriptEntry]) -> list[str]:
    return [e.text for e in transcript if e.role == Role.LEAD]


def _last_ai_text(transcript: Sequence[TranscriptEntry]) -> str:
    for entry in reversed(transcript):
        if entry.role == Role.AI:
            return entry.text
    return ""


def _has_value(value: object) -> bool:
    return value is not None and value != ""


# ================================================================ extraction


def parse_amount(number: str) -> float:
    """'25.000' / '25,000' / '25.000,50' / '2,5' / '2.5' -> float."""
    if re.fullmatch(r"\d{1,3}(?:[.,]\d{3})+(?:[.,]\d{1,2})?", number):
        decimals = ""
        last = re.search(r"[.,](\d{1,2})$", number)
        if last:
            decimals = last.group(1)
            number = number[: last.start()]
        whole = re.sub(r"[.,]", "", number)
        return float(f"{whole}.{decimals}" if decimals else whole)
    return float(number.replace(",", "."))


def extract_money(text: str) -> dict[str, int]:
    """Purchase budget and monthly amount in whole euros, from the ways people write money."""
    budgets: list[int] = []
    monthly: list[int] = []
    for match in _NUMBER_RE.finditer(text):
        raw = match.group(1)
        before = text[max(0, match.start() - 30) : match.start()]
        after = text[match.end() : match.end() + 30]
        thousands = _THOUSANDS_AFTER.match(after)
        currency = bool(_CURRENCY_BEFORE.search(before) or _CURRENCY_AFTER.match(after))
        if not currency and not thousands and _NOT_MONEY_AFTER.match(after):
            continue
        budget_word = bool(_BUDGET_WORD_BEFORE.search(before))
        if not (currency or thousands or budget_word):
            continue
        # A bare year ("tot 2020") is not money unless a currency says so.
        if _YEAR_RE.match(raw) and not currency:
            continue
        value = parse_amount(raw) * (1000 if thousands else 1)
        rest = after[thousands.end() :] if thousands else after
        if _MONTHLY_AFTER.match(rest):
            monthly.append(round(value))
        elif 500 <= value <= 10_000_000:
            budgets.append(round(value))
    money: dict[str, int] = {}
    if budgets:
        # "tussen 20k en 25k": the upper end is the budget the lead can spend.
        money["budget"] = max(budgets)
    if monthly:
        money["monthly_budget"] = monthly[0]
    return money


def _model_display(token: str) -> str:
    if len(token) <= 4 and any(c.isdigit() for c in token):
        return token.upper()
    return token[:1].upper() + token[1:]


_MAKE_RE = re.compile(
    r"(?<!\w)("
    + "|".join(re.escape(m) for m in sorted(_MAKES, key=len, reverse=True))
    + r")(?!\w)",
    re.IGNORECASE,
)
_MODEL_ONLY_RE = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(m) for m in sorted(_MODELS, key=len, reverse=True)) + r")"
    r"(?![\w])",
    re.IGNORECASE,
)
_TOKEN_AFTER_RE = re.compile(r"^\s+([\w][\w\-.]*\w|\w)")


def _owner_of_mention(text: str, start: int) -> str:
    """'owned' when the words just before a car mention say it is the lead's current car."""
    before = _words(text[max(0, start - 60) : start])[-5:]
    for word in reversed(before):
        if word in _WANTED_MARKERS:
            return "wanted"
        if word in _OWNED_MARKERS:
            return "owned"
    return "wanted"


def extract_cars(text: str) -> dict[str, FieldValue]:
    """The wanted make/model and, separately, the car the lead owns (for trade-in)."""
    mentions: list[tuple[int, int, str, str]] = []  # start, end, make, model
    for match in _MAKE_RE.finditer(text):
        make = _MAKES[match.group(1).lower()]
        model = ""
        rest = text[match.end() :]
        token_match = _TOKEN_AFTER_RE.match(rest)
        end = match.end()
        if token_match:
            token = token_match.group(1).rstrip(".")
            lowered = token.lower()
            if lowered not in _NOT_A_MODEL and not _YEAR_RE.match(token):
                model = _model_display(token)
                end += token_match.end()
                follow = _TOKEN_AFTER_RE.match(text[end:])
                if follow and (
                    follow.group(1).lower() in {"klasse", "class", "serie", "series"}
                    or (lowered == "model" and len(follow.group(1)) <= 2)
                ):
                    model = f"{model} {_model_display(follow.group(1))}"
                    end += follow.end()
        mentions.append((match.start(), end, make, model))
    covered = [(s, e) for s, e, _, _ in mentions]
    for match in _MODEL_ONLY_RE.finditer(text):
        if any(s <= match.start() < e for s, e in covered):
            continue
        make, model = _MODELS[match.group(1).lower()]
        mentions.append((match.start(), match.end(), make, model))
    fields: dict[str, FieldValue] = {}
    for start, _end, make, model in sorted(mentions):
        label = f"{make} {model}".strip()
        if _owner_of_mention(text, start) == "owned":
            fields.setdefault("trade_in_vehicle", label)
        elif "make" not in fields:
            fields["make"] = make
            if model:
                fields["model"] = model
    return fields


def extract_fuel(text: str) -> str | None:
    for pattern, value in _FUEL_TYPES:
        if re.search(rf"(?<!\w)(?:{pattern})(?!\w)", text, re.IGNORECASE):
            return value
    return None


def extract_fields(text: str) -> dict[str, FieldValue]:
    """Every field the rules can read from `text` (the playbook later keeps what it declares)."""
    fields: dict[str, FieldValue] = {}
    fields.update(extract_cars(text))
    fields.update(extract_money(text))
    fuel = extract_fuel(text)
    if fuel:
        fields["fuel_type"] = fuel
    timeline = _TIMELINE_RE.search(text)
    if timeline:
        fields["timeline"] = timeline.group(0).lower()
    if _URGENT_RE.search(text):
        fields["urgency"] = True
    if _TRADE_IN_RE.search(text) or "trade_in_vehicle" in fields:
        fields["trade_in"] = True
    if _FINANCING_RE.search(text):
        fields["financing"] = True
    if _OPT_OUT_RE.search(text):
        fields["opt_out"] = True
    email = _EMAIL_RE.search(text)
    if email:
        fields["email"] = email.group(0).rstrip(".")
    for phone in _PHONE_RE.finditer(text):
        digits = re.sub(r"\D", "", phone.group(0))
        if 9 <= len(digits) <= 15:
            fields["phone"] = ("+" if phone.group(0).startswith("+") else "") + digits
            break
    team = _TEAM_SIZE_RE.search(text)
    if team:
        fields["team_size"] = int(team.group(1))
    company = _COMPANY_RE.search(text)
    if company:
        fields["company"] = company.group(1).strip(" .&")
    name = _NAME_RE.search(text)
    if name:
        fields["name"] = name.group(1)
    return fields


def _keep_declared(playbook: Playbook, fields: dict[str, FieldValue]) -> dict[str, FieldValue]:
    if not playbook.fields:
        return fields
    specs = {spec.name: spec for spec in playbook.fields}
    kept: dict[str, FieldValue] = {}
    for name, value in fields.items():
        if name in CONTROL_FIELDS:
            kept[name] = value
            continue
        spec = specs.get(name)
        if spec is None:
            continue
        if spec.type == "int" and not isinstance(value, bool):
            try:
                kept[name] = int(value)
            except (TypeError, ValueError):
                continue
        elif spec.type == "bool":
            kept[name] = bool(value)
        else:
            kept[name] = value if isinstance(value, str) else str(value)
    return kept


def _answer_to_last_question(
    playbook: Playbook, text: str, last_ai: str, fields: dict[str, FieldValue]
) -> dict[str, FieldValue]:
    """A bare "ja"/"nee" answers the yes/no question the AI just asked."""
    if not last_ai:
        return {}
    for spec in playbook.fields:
        if spec.type != "bool" or spec.name in fields:
            continue
        if any(q and q in last_ai for q in spec.question.values()):
            if _YES_RE.match(text):
                return {spec.name: True}
            if _NO_RE.match(text):
                return {spec.name: False}
    return {}


def _sentiment(text: str) -> float:
    words = _words(text)
    pos = neg = 0
    for i, word in enumerate(words):
        negated = i > 0 and words[i - 1] in _NEGATIONS
        if word in _POSITIVE:
            neg, pos = (neg + 1, pos) if negated else (neg, pos + 1)
        elif word in _NEGATIVE:
            pos, neg = (pos, neg + 1) if not negated else (pos + 1, neg)
    if pos == neg == 0:
        return 0.0
    return max(-1.0, min(1.0, (pos - neg) / max(3, pos + neg)))


def _bump(priority: Priority) -> Priority:
    order = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT]
    return order[min(order.index(priority) + 1, len(order) - 1)]


def _escalation(
    playbook: Playbook,
    *,
    text: str,
    intents: Sequence[Intent],
    confidence: float,
    budget: int | None,
) -> tuple[EscalationRule, str] | None:
    """The first rule whose set conditions all hold, with a reason an operator can read."""
    for rule in playbook.escalation:
        reasons: list[str] = []
        conditions = 0
        if rule.intents:
            conditions += 1
            hit = [i for i in intents if i in rule.intents]
            if not hit:
                continue
            reasons.append(f"intent {hit[0].value}")
        if rule.keywords:
            conditions += 1
            words = _matched_keywords(text, rule.keywords)
            if not words:
                continue
            reasons.append("mentions " + ", ".join(repr(w) for w in words))
        if rule.confidence_below is not None:
            conditions += 1
            if confidence >= rule.confidence_below:
                continue
            reasons.append(f"confidence {confidence:.2f} < {rule.confidence_below:.2f}")
        if rule.min_budget is not None:
            conditions += 1
            if budget is None or budget < rule.min_budget:
                continue
            reasons.append(f"budget €{budget:,} ≥ €{rule.min_budget:,}")
        if conditions == 0:
            continue
        lead_in = f"{rule.description} " if rule.description else ""
        return rule, f"{lead_in}({'; '.join(reasons)})"
    return None


# ================================================================ rendering


class _Blank(dict[str, str]):
    # A placeholder the context does not fill renders empty rather than failing the reply.
    def __missing__(self, key: str) -> str:
        return ""


def _template(playbook: Playbook, key: str, lang: str) -> str | None:
    own = playbook.templates.get(key, {})
    builtin = DEFAULT_TEMPLATES.get(key, {})
    for candidate in (
        own.get(lang),
        builtin.get(lang),
        own.get(playbook.default_language),
        builtin.get("en"),
    ):
        if candidate is not None:
            return candidate
    return None


def _render(playbook: Playbook, keys: Sequence[str], lang: str, ctx: Mapping[str, str]) -> str:
    """The first of `keys` that has a template, filled with `ctx`."""
    for key in keys:
        template = _template(playbook, key, lang)
        if template is None:
            continue
        try:
            text = template.format_map(_Blank(ctx))
        except (ValueError, IndexError, AttributeError):
            # A custom template with stray braces is sent as written rather than failing a turn.
            text = template
        return re.sub(r"[ \t]{2,}", " ", text).replace(" ,", ",").replace(" !", "!").strip()
    return ""


def format_euros(amount: int, lang: str) -> str:
    grouped = f"{amount:,}"
    return "€" + (grouped.replace(",", ".") if lang == "nl" else grouped)


def _display_value(name: str, value: FieldValue, lang: str) -> str:
    if name in {"budget", "monthly_budget"} and isinstance(value, int | float):
        return format_euros(round(value), lang)
    if name == "fuel_type" and isinstance(value, str):
        return _FUEL_DISPLAY.get(lang, {}).get(value, value)
    return str(value)


def describe_fields(playbook: Playbook, fields: Mapping[str, FieldValue], lang: str) -> str:
    """'Volkswagen Golf, diesel, budget €25.000, inruil' in the playbook's field order."""
    items: list[str] = []
    make, model = fields.get("make"), fields.get("model")
    if _has_value(make) or _has_value(model):
        items.append(" ".join(str(v) for v in (make, model) if _has_value(v)))
    order = [spec.name for spec in playbook.fields] or sorted(fields)
    labels = {spec.name: spec.label for spec in playbook.fields}
    for name in order:
        if name in UNDISPLAYED_FIELDS or name == "make" or name not in fields:
            continue
        value = fields[name]
        label_by_lang = labels.get(name, {})
        label = label_by_lang.get(lang) or label_by_lang.get("en") or name.replace("_", " ")
        if isinstance(value, bool):
            if value:
                items.append(label)
            continue
        if not _has_value(value):
            continue
        shown = _display_value(name, value, lang)
        if name == "fuel_type":
            items.append(shown)
        elif name == "budget":
            items.append(f"{label} {shown}")
        elif name == "monthly_budget":
            items.append(f"{shown} {label}")
        else:
            items.append(f"{label}: {shown}")
    return ", ".join(items)


def next_question(
    playbook: Playbook,
    fields: Mapping[str, FieldValue],
    lang: str,
    transcript: Sequence[TranscriptEntry] = (),
) -> str | None:
    """The question for the first missing field, skipping ones already asked twice."""
    asked = [e.text for e in transcript if e.role == Role.AI]
    for spec in playbook.fields:
        if _has_value(fields.get(spec.name)):
            continue
        question = spec.question.get(lang)
        if not question:
            continue
        if sum(1 for text in asked if question in text) >= 2:
            continue
        return question
    return None


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


# ================================================================ the provider


class OfflineProvider:
    """Implements `activities.llm.base.LlmProvider` with rules; see the module docstring."""

    name = PROVIDER_NAME

    # ------------------------------------------------------------ analyse
    async def analyse(self, request: AnalyseInput) -> AnalysisResult:
        analysis = self.analyse_sync(request)
        texts = [*request.new_messages, *(e.text for e in request.transcript)]
        return AnalysisResult(analysis=analysis, usage=_usage(texts, analysis.summary))

    def analyse_sync(self, request: AnalyseInput) -> Analysis:
        playbook = request.playbook
        text = "\n".join(m for m in request.new_messages if m.strip())
        language = self._language(playbook, text, request.transcript, request.known_fields)

        # Intents: count distinct keyword hits per intent of the playbook.
        hits: dict[Intent, int] = {}
        for rule in playbook.intents:
            found = _matched_keywords(text, rule.keywords)
            if found:
                hits[rule.intent] = hits.get(rule.intent, 0) + len(found)
        ranked = sorted(hits, key=lambda i: (-hits[i], INTENT_PRECEDENCE.index(i)))

        raw_fields = extract_fields(text)
        raw_fields.update(
            _answer_to_last_question(playbook, text, _last_ai_text(request.transcript), raw_fields)
        )
        fields = _keep_declared(playbook, raw_fields)
        informative = {k for k in fields if k not in CONTROL_FIELDS}

        if ranked:
            intent = ranked[0]
            confidence = min(
                CONFIDENCE_MAX, CONFIDENCE_BASE + CONFIDENCE_PER_KEYWORD * hits[intent]
            )
            runner_up = [i for i in ranked[1:] if i != Intent.GREETING]
            if runner_up and hits[runner_up[0]] == hits[intent]:
                confidence -= 0.1  # two intents equally likely: less sure of the primary
        elif {"make", "model"} & informative:
            intent, confidence = Intent.PRODUCT_INQUIRY, CONFIDENCE_FIELDS_ONLY
        elif informative:
            intent, confidence = Intent.OTHER, CONFIDENCE_FIELDS_ONLY
        elif len(text.split()) <= 3:
            intent, confidence = Intent.OTHER, CONFIDENCE_SHORT_UNMATCHED
        elif request.knowledge:
            # No rule understood it, but the tenant's knowledge base has an answer to cite.
            intent, confidence = Intent.OTHER, CONFIDENCE_KNOWLEDGE_ONLY
        else:
            intent, confidence = Intent.OTHER, CONFIDENCE_NOTHING_MATCHED
        secondary = tuple(i for i in ranked if i != intent)

        rule_priority = {r.intent: r.priority for r in playbook.intents}
        priority = rule_priority.get(intent) or Priority.NORMAL
        if fields.get("urgency") is True:
            priority = _bump(priority)

        sentiment = _sentiment(text)
        merged_budget = fields.get("budget", request.known_fields.get("budget"))
        budget = (
            int(merged_budget)
            if isinstance(merged_budget, int | float) and not isinstance(merged_budget, bool)
            else None
        )
        escalation = _escalation(
            playbook,
            text=text,
            intents=(intent, *secondary),
            confidence=confidence,
            budget=budget,
        )
        if escalation is not None and priority in (Priority.LOW, Priority.NORMAL):
            priority = Priority.HIGH  # a human is being pulled in: they should see it first

        shown = ", ".join(f"{k}={v}" for k, v in fields.items())
        summary = (
            f"{intent.value}"
            + (f" (+{', '.join(i.value for i in secondary)})" if secondary else "")
            + f"; language {language}; confidence {confidence:.2f}"
            + (f"; fields: {shown}" if shown else "")
            + (f"; escalate: {escalation[0].name}" if escalation else "")
            + " [offline rules]"
        )
        return Analysis(
            intent=intent,
            secondary_intents=secondary,
            priority=priority,
            language=language,
            sentiment=round(sentiment, 2),
            fields=fields,
            escalate=escalation is not None,
            escalation_rule=escalation[0].name if escalation else None,
            escalation_reason=escalation[1] if escalation else None,
            confidence=round(max(0.0, confidence), 2),
            summary=summary,
        )

    def _language(
        self,
        playbook: Playbook,
        text: str,
        transcript: Sequence[TranscriptEntry],
        known: Mapping[str, FieldValue],
    ) -> str:
        allowed = playbook.languages or (playbook.default_language,)
        detected = detect_language(text, allowed, playbook.default_language)
        if detected is None:
            # Too little to tell ("Golf, 25k"): keep the language the lead wrote in before.
            detected = detect_language(
                " ".join(_lead_texts(transcript)[-5:]), allowed, playbook.default_language
            )
        if detected is None:
            known_language = known.get("language")
            detected = known_language if isinstance(known_language, str) else None
        if detected not in allowed:
            detected = playbook.default_language
        return detected

    # ------------------------------------------------------------ generate_reply
    async def generate_reply(self, request: GenerateReplyInput) -> GeneratedReply:
        text = self.reply_text(request)
        inputs = [e.text for e in request.transcript] + [h.snippet for h in request.knowledge]
        return GeneratedReply(text=text, usage=_usage(inputs, text))

    def _reply_language(self, request: GenerateReplyInput) -> str:
        playbook = request.playbook
        allowed = playbook.languages or (playbook.default_language,)
        for candidate in (
            request.language,
            request.analysis.language if request.analysis else None,
        ):
            if candidate and candidate in allowed:
                return candidate
        detected = detect_language(
            " ".join(_lead_texts(request.transcript)[-5:]), allowed, playbook.default_language
        )
        return detected if detected in allowed and detected else playbook.default_language

    def _context(self, request: GenerateReplyInput, lang: str) -> dict[str, str]:
        playbook = request.playbook
        fields: dict[str, FieldValue] = dict(request.known_fields)
        if request.analysis:
            fields.update(request.analysis.fields)
        name_field = fields.get("name")
        full_name = request.contact_name or (name_field if isinstance(name_field, str) else "")
        first_name = full_name.split()[0] if full_name and full_name.split() else ""
        ctx: dict[str, str] = {
            "name": first_name,
            "business": playbook.business_name,
            "assistant": playbook.assistant_name or playbook.business_name,
            "details": describe_fields(playbook, fields, lang),
        }
        ctx["hello"] = _render(playbook, ["hello_named" if first_name else "hello"], lang, ctx)
        make, model = fields.get("make"), fields.get("model")
        if _has_value(make) and _has_value(model):
            ctx["interest"] = f"{'de' if lang == 'nl' else 'the'} {make} {model}"
        elif _has_value(make):
            ctx["interest"] = f"{'een' if lang == 'nl' else 'a'} {make}"
        else:
            ctx["interest"] = _render(playbook, ["interest_default"], lang, ctx)
        return ctx

    def reply_text(self, request: GenerateReplyInput) -> str:
        playbook = request.playbook
        lang = self._reply_language(request)
        ctx = self._context(request, lang)
        analysis = request.analysis
        fields: dict[str, FieldValue] = dict(request.known_fields)
        if analysis:
            fields.update(analysis.fields)
        purpose = request.purpose

        if purpose == ReplyPurpose.SPECIALIST_ALERT:
            return self._specialist_alert(request, fields)
        if purpose == ReplyPurpose.ESCALATION_NOTICE:
            keys = ["escalation_notice"]
            if analysis:
                keys = [
                    f"escalation_notice.{analysis.escalation_rule}",
                    f"escalation_notice.{analysis.intent.value}",
                    *keys,
                ]
            return _render(playbook, keys, lang, ctx)
        if purpose == ReplyPurpose.HOLDING:
            return _render(playbook, ["holding"], lang, ctx)

        parts: list[str] = []
        ask = True
        if purpose == ReplyPurpose.OUTREACH:
            parts.append(_render(playbook, ["outreach"], lang, ctx))
        elif purpose == ReplyPurpose.FOLLOW_UP:
            number = max(1, request.follow_up_number)
            keys = [f"follow_up_{n}" for n in range(number, 1, -1)] + ["follow_up"]
            parts.append(_render(playbook, keys, lang, ctx))
            # Only the first follow-up repeats the open question; later ones just check in.
            ask = number == 1
        else:
            parts.extend(self._reply_parts(request, lang, ctx))
            intent = analysis.intent if analysis else Intent.OTHER
            ask = intent not in NO_QUESTION_INTENTS and not (analysis and analysis.escalate)

        if ask and not any("?" in p for p in parts):
            question = next_question(playbook, fields, lang, request.transcript)
            parts.append(question or _render(playbook, ["next_step"], lang, ctx))
        return " ".join(p for p in parts if p)

    def _reply_parts(
        self, request: GenerateReplyInput, lang: str, ctx: dict[str, str]
    ) -> list[str]:
        playbook = request.playbook
        analysis = request.analysis
        intent = analysis.intent if analysis else Intent.OTHER
        new_fields = {
            k: v
            for k, v in (analysis.fields if analysis else {}).items()
            if k not in UNDISPLAYED_FIELDS or k == "model"
        }
        already_talking = any(e.role == Role.AI for e in request.transcript)
        if analysis and analysis.confidence < CONFIDENCE_SHORT_UNMATCHED and intent == Intent.OTHER:
            key = "clarify"
        elif intent in (Intent.PRICING, Intent.FINANCING) and analysis and analysis.sentiment < 0:
            key = "objection"
        elif intent == Intent.GREETING and already_talking:
            key = "other"  # "bedankt!" mid-conversation is not a new hello
        elif intent == Intent.OTHER and new_fields:
            key = "answer"
        else:
            key = intent.value
        opening = _render(playbook, [key, "other"], lang, ctx)
        # A question at the end of the opening moves to the end of the whole reply, after what
        # was noted and cited, so the lead's next step is the last thing they read.
        split = re.match(r"^(.*[.!])\s+([^.!?]+\?)$", opening, re.DOTALL)
        parts = [split.group(1)] if split else [opening]
        trailing_question = split.group(2) if split else ""
        if new_fields and intent not in NO_QUESTION_INTENTS:
            details = describe_fields(playbook, new_fields, lang)
            if details:
                parts.append(_render(playbook, ["noted"], lang, {**ctx, "details": details}))
        if request.knowledge and intent not in NO_QUESTION_INTENTS:
            hit = request.knowledge[0]
            snippet = " ".join(hit.snippet.split())
            if snippet:
                if snippet[-1] not in ".!?…":
                    snippet += "…"
                parts.append(
                    _render(
                        playbook,
                        ["knowledge"],
                        lang,
                        {**ctx, "title": hit.title, "snippet": snippet},
                    )
                )
        if trailing_question:
            parts.append(trailing_question)
        return parts

    def _specialist_alert(
        self, request: GenerateReplyInput, fields: Mapping[str, FieldValue]
    ) -> str:
        playbook = request.playbook
        # The alert goes to the business's own staff: their language, not the lead's.
        lang = playbook.default_language
        analysis = request.analysis
        lead_texts = _lead_texts(request.transcript)
        last = " ".join(lead_texts[-1].split()) if lead_texts else ""
        if len(last) > 300:
            last = last[:300].rsplit(" ", 1)[0] + "…"
        ctx = self._context(request, lang)
        ctx.update(
            contact=request.contact_name or _render(playbook, ["unknown_contact"], lang, ctx),
            rule=(analysis.escalation_rule if analysis else None) or "-",
            reason=(analysis.escalation_reason if analysis else None) or request.instruction or "-",
            summary=analysis.summary if analysis else "",
            last_message=last,
        )
        shown = describe_fields(playbook, fields, lang)
        ctx["details"] = shown or _render(playbook, ["no_details"], lang, ctx)
        return _render(playbook, ["specialist_alert"], lang, ctx)

    # ------------------------------------------------------------ write_email
    async def write_email(self, request: WriteEmailInput) -> WrittenEmail:
        subject, body = self.email_text(request)
        facts = request.facts
        inputs = [*request.lead.values(), facts.summary or "", facts.company or ""]
        return WrittenEmail(subject=subject, body=body, usage=_usage(inputs, subject + " " + body))

    def email_text(self, request: WriteEmailInput) -> tuple[str, str]:
        playbook = request.playbook
        lead, facts = request.lead, request.facts
        allowed = playbook.languages or (playbook.default_language,)
        lang = request.language or _column(lead, "language", "taal") or playbook.default_language
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
        ctx["hello"] = _render(
            playbook, ["email_hello" if first_name else "email_hello_anonymous"], lang, ctx
        )
        if not company:
            ctx["company"] = _render(playbook, ["your_company"], lang, ctx)
        # Only what enrichment found: the first sentence of the site's own summary, verbatim.
        fact = _first_sentence(facts.summary) if facts.summary else ""
        ctx["fact_line"] = (
            _render(
                playbook,
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
        ctx["pitch"] = _render(playbook, ["pitch"], lang, ctx) or playbook.business_description
        subject = _render(
            playbook, ["email_subject" if company else "email_subject_generic"], lang, ctx
        )
        body = _render(playbook, ["email_body"], lang, ctx)
        body = re.sub(r"\n{3,}", "\n\n", body).strip()
        return subject, body


def offline_provider(settings: Settings, http: httpx.AsyncClient) -> OfflineProvider:
    """The `LlmProviderFactory` registered as "offline"; it needs neither settings nor HTTP."""
    del settings, http
    return OfflineProvider()
