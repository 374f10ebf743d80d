"""What the offline rules read in a lead's message: language, sentiment and field values.

Pure functions over text and the offline pack (activities/llm/offline_pack.py); the pack holds
the word lists that differ per business (car makes, discount words) or per language, and the
patterns here hold what is the same everywhere (how people write money, e-mail addresses,
phone numbers, days and times). Money amounts come from activities/llm/amounts.py, the same
reader the reply guard checks replies with, so the two never disagree about what is money.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from activities.llm.amounts import find_amounts, parse_number
from activities.llm.offline_pack import OfflinePack
from models.agent import FieldValue
from workflows.escalation import keyword_pattern, matched_keywords

_WORD_RE = re.compile(r"[\w'\u2019]+(?:[.\-][\w]+)*", re.UNICODE)


def words(text: str) -> list[str]:
    return [w.lower().replace("\u2019", "'") for w in _WORD_RE.findall(text)]


def phrases_in(text: str, phrases: Iterable[str]) -> list[str]:
    """The phrases of a list that occur in `text` (whole words; a trailing * = any ending)."""
    return matched_keywords(text, {"any": tuple(phrases)})


def has_phrase(text: str, phrases: Iterable[str]) -> bool:
    return any(p and keyword_pattern(p).search(text) for p in phrases)


# ---------------------------------------------------------------- language and sentiment


def detect_language(text: str, allowed: Sequence[str], pack: OfflinePack) -> str | None:
    """The allowed language with the most of its common words in `text`; None on a tie or
    when no common word of any allowed language occurs."""
    vocab = pack.words.get("language", {})
    tokens = words(text)
    counts = {lang: sum(1 for w in tokens if w in set(vocab.get(lang, ()))) for lang in allowed}
    if not counts:
        return None
    best = max(counts.values())
    leaders = [lang for lang, n in counts.items() if n == best]
    if best == 0 or len(leaders) > 1:
        return None
    return leaders[0]


def sentiment(text: str, pack: OfflinePack) -> float:
    """-1..1 from the pack's positive and negative words; a negation flips the next word."""
    positive = {w.lower() for w in pack.word_list("positive")}
    negative = {w.lower() for w in pack.word_list("negative")}
    negations = {w.lower() for w in pack.word_list("negations")}
    tokens = words(text) + [c for c in text if c in positive or c in negative]  # emoji
    pos = neg = 0
    for i, word in enumerate(tokens):
        negated = i > 0 and tokens[i - 1] in negations
        if word in positive:
            neg, pos = (neg + 1, pos) if negated else (neg, pos + 1)
        elif word in negative:
            pos, neg = (pos + 1, neg) if negated else (pos, neg + 1)
    if pos == neg == 0:
        return 0.0
    return round(max(-1.0, min(1.0, (pos - neg) / max(3, pos + neg))), 2)


# ---------------------------------------------------------------- money


@dataclass(frozen=True)
class Money:
    budget: int | None = None
    monthly: int | None = None
    discount: bool = False  # an amount asked off the price ("2k off", "€500 korting")


_BUDGET_WORD_BEFORE = re.compile(
    r"(?:budget|max|maximaal|maximum|hooguit|up to|at most|tot|around|rond|ongeveer|about|"
    r"zo'n|circa|ca\.|under|onder|below|spend|besteden|uitgeven|bied|bieden|offer|pay)\b[^\d\n]{0,20}$",
    re.IGNORECASE,
)
_PLAIN_NUMBER_RE = re.compile(r"(?<![\w.,:€$£])(\d{1,3}(?:[.,]\d{3})+|\d{4,7})(?![\w.,]\d)")
_NOT_MONEY_AFTER = re.compile(
    r"\s*(?:km|kilometer\w*|miles|mijl|pk|hp|kw|%|procent|percent|jaar|years?|maanden"
    r"|months?|weken|weeks?|dagen|days?|deuren|doors|medewerkers|employees|people|mensen|fte"
    r"|cc|kg|liter)(?!\w)",
    re.IGNORECASE,
)
_MONTHLY_AFTER = re.compile(
    r"[^\d\n]{0,14}?(?:per maand|p/m|p\.m\.|pm|per month|a month|/maand|/month|/mo|/mnd|per mnd"
    r"|monthly|maandelijks|per mo|each month|elke maand|a mo)(?!\w)",
    re.IGNORECASE,
)
_MONTHLY_BEFORE = re.compile(
    r"(?:per maand|maandbedrag|monthly|per month|maandelijks)\b[^\d\n]{0,8}$", re.IGNORECASE
)
# A down payment is neither the budget nor the monthly amount.
_DOWN_PAYMENT_AFTER = re.compile(
    r"\s*(?:euro\s*)?(?:aanbeta\w*|aan\s*betalen|down(?:\s*payment)?|deposit)(?!\w)",
    re.IGNORECASE,
)
_YEAR_RE = re.compile(r"(?:19[5-9]\d|20[0-4]\d)")
MIN_BUDGET = 500  # "give me the car for €1" names an amount, not a budget


def extract_money(text: str, pack: OfflinePack) -> Money:
    """The purchase (or project) budget and a monthly amount in whole euros; the upper end of a
    range is the budget ("tussen 20k en 25k" can spend 25000)."""
    discount_words = pack.word_list("discount_after")
    discount_re = (
        re.compile(r"\s*(?:" + "|".join(re.escape(w) for w in discount_words) + r")(?!\w)", re.I)
        if discount_words
        else None
    )
    budgets: list[int] = []
    monthly: list[int] = []
    discount = False
    spans: list[tuple[int, int, int]] = [(a.start, a.end, a.value) for a in find_amounts(text)]
    taken = [(s, e) for s, e, _ in spans]
    for match in _PLAIN_NUMBER_RE.finditer(text):
        start, end = match.span(1)
        if any(s <= start < e for s, e in taken):
            continue
        before = text[max(0, start - 30) : start]
        if not _BUDGET_WORD_BEFORE.search(before) and not _MONTHLY_BEFORE.search(before):
            continue
        if _NOT_MONEY_AFTER.match(text, end) or _YEAR_RE.fullmatch(match.group(1)):
            continue
        spans.append((start, end, round(parse_number(match.group(1)))))
    for start, end, value in sorted(spans):
        if discount_re is not None and discount_re.match(text, end):
            discount = True
            continue
        before = text[max(0, start - 24) : start]
        if re.search(r"(?:korting|discount|off)\s*(?:van|of)?\s*$", before, re.I):
            discount = True
            continue
        if _DOWN_PAYMENT_AFTER.match(text, end):
            continue
        if _MONTHLY_AFTER.match(text, end) or _MONTHLY_BEFORE.search(before):
            monthly.append(value)
        elif value >= MIN_BUDGET:
            budgets.append(value)
    return Money(
        budget=max(budgets) if budgets else None,
        monthly=monthly[0] if monthly else None,
        discount=discount,
    )


# ---------------------------------------------------------------- cars

# Read backwards from a car mention: the nearest marker decides whose car it is.
_OWNED_MARKERS = frozenset(
    "mijn my mn m'n huidige current oude old inruil inruilen inruilauto inruilwaarde rijd "
    "own owned trade-in trading".split()
)
_WANTED_MARKERS = frozenset(
    "voor for naar zoek zoeken looking want wil interesse interested nieuwe new kopen buy "
    "koop buying get".split()
)
# "have" is owned only when the lead has it ("ik heb een Corsa", "heb ik een Corsa"); asking
# whether the dealer has it ("hebben jullie nog de A3", "do you still have the Audi A3",
# "heeft de Octavia een trekhaak") is about the wanted car.
_HAVE = frozenset("have has heb hebt heeft hebben had got".split())
_FIRST_PERSON = frozenset("i ik we wij i've we've ive".split())
_NOT_A_MODEL = frozenset(
    """en of met die dat is in uit van voor op te and or with that which in from for of the
    a an een de het diesel benzine elektrisch hybride petrol electric hybrid lpg inruilen
    trade kopen buy nog still nieuw new occasion gebruikt used is are zijn heeft has hebben
    have te for kan can wil want auto car""".split()
)


def _display_model(token: str) -> str:
    if any(c.isdigit() for c in token) and len(token) <= 5:
        return token.upper()
    return token[:1].upper() + token[1:]


def _owner(text: str, start: int) -> str:
    before = words(text[max(0, start - 60) : start])[-6:]
    for i in range(len(before) - 1, -1, -1):
        word = before[i]
        if word in _HAVE:
            neighbours = set(before[max(0, i - 2) : i + 3])
            return "owned" if neighbours & _FIRST_PERSON else "wanted"
        if word in _OWNED_MARKERS:
            return "owned"
        if word in _WANTED_MARKERS:
            return "wanted"
    return "wanted"


def _alternation(names: Iterable[str]) -> str:
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


def extract_cars(text: str, pack: OfflinePack) -> dict[str, FieldValue]:
    """The wanted make/model and, separately, the car the lead owns (for a trade-in)."""
    if not pack.makes and not pack.models:
        return {}
    mentions: list[tuple[int, int, str, str]] = []  # start, end, make, model
    models_lower = {k.lower(): v for k, v in pack.models.items()}
    if pack.makes:
        make_re = re.compile(rf"(?<![\w-])({_alternation(pack.makes)})(?![\w-])", re.IGNORECASE)
        for match in make_re.finditer(text):
            make = pack.makes[match.group(1).lower()]
            model = ""
            end = match.end()
            after = re.match(r"\s+([\w][\w\-.!]*\w!?|\w)", text[end:])
            if after:
                token = after.group(1).rstrip(".")
                lowered = token.lower()
                known = models_lower.get(lowered)
                if known and known[0] == make:
                    model, end = known[1], end + after.end()
                elif lowered not in _NOT_A_MODEL and not _YEAR_RE.fullmatch(token):
                    model, end = _display_model(token), end + after.end()
                    follow = re.match(r"\s+(\w+)", text[end:])
                    if follow and (
                        follow.group(1).lower() in {"klasse", "class", "serie", "series"}
                        or (lowered == "model" and len(follow.group(1)) <= 2)
                    ):
                        model = f"{model} {_display_model(follow.group(1))}"
                        end += follow.end()
            mentions.append((match.start(), end, make, model))
    covered = [(s, e) for s, e, _, _ in mentions]
    if pack.models:
        model_re = re.compile(rf"(?<![\w.-])({_alternation(pack.models)})(?![\w-])", re.IGNORECASE)
        for match in model_re.finditer(text):
            if any(s <= match.start() < e for s, e in covered):
                continue
            make, model = models_lower[match.group(1).lower()]
            mentions.append((match.start(), match.end(), make, model))
    fields: dict[str, FieldValue] = {}
    for start, _end, make, model in sorted(mentions):
        if _owner(text, start) == "owned":
            fields.setdefault("trade_in_vehicle", f"{make} {model}".strip())
        elif "make" not in fields:
            fields["make"] = make
            if model:
                fields["model"] = model
    return fields


_FUEL_TYPES: tuple[tuple[str, str], ...] = (
    (r"plug-?in(?:\s+hybri\w*)?|phev|hybride|hybrid|hybrid\w*", "hybrid"),
    (r"volledig\s+elektrisch|elektrisch\w*|electric\w*|ev|bev|stekker\w*", "electric"),
    (r"diesel\w*", "diesel"),
    (r"benzine\w*|petrol|gasoline", "petrol"),
    (r"lpg|autogas", "lpg"),
)


def extract_fuel(text: str) -> str | None:
    for pattern, value in _FUEL_TYPES:
        if re.search(rf"(?<!\w)(?:{pattern})(?!\w)", text, re.IGNORECASE):
            return value
    return None


# ---------------------------------------------------------------- build year and mileage

_YEAR = r"(19[89]\d|20[0-4]\d)"
# Words that make the year a floor: "vanaf 2018", "bouwjaar 2020", "2019 or newer", "2018+".
_MIN_YEAR_RES = (
    re.compile(
        r"(?<!\w)(?:vanaf|from|since|sinds|minimaal|minstens|at least|niet ouder dan"
        r"|not older than|no older than)\s+(?:bouwjaar\s+|build year\s+|model year\s+)?"
        + _YEAR
        + r"(?![\d.,]\d|\s*(?:euro|eur|€|k\b))",
        re.IGNORECASE,
    ),
    re.compile(
        r"(?<!\w)(?:bouwjaar|build year|model year|year)\s*:?\s*(?:vanaf\s+|from\s+)?"
        + _YEAR
        + r"(?!\d)",
        re.IGNORECASE,
    ),
    re.compile(
        r"(?<![\w.,])"
        + _YEAR
        + r"\s*(?:\+|of nieuwer|of jonger|of later|en nieuwer|en jonger|or newer|or later"
        r"|and newer|and later|onwards)(?!\w)",
        re.IGNORECASE,
    ),
)
_NEWER_THAN_RE = re.compile(
    r"(?<!\w)(?:nieuwer dan|jonger dan|newer than|later than)\s+" + _YEAR + r"(?!\d)",
    re.IGNORECASE,
)
# A year or mileage right after these is the lead's own car ("mijn Corsa, bouwjaar 2012").
_OWN_CAR_BEFORE_RE = re.compile(
    r"(?<!\w)(?:mijn|my|mn|m'n|huidige|current|inruil\w*|trade[- ]?in|trading in)(?!\w)",
    re.IGNORECASE,
)
_MAX_MILEAGE_RE = re.compile(
    r"(?<!\w)(?:max(?:imaal|imum)?\.?|under|onder|minder dan|less than|below|up to|tot"
    r"|niet meer dan|no more than|hooguit|at most|<)\s*(?:de\s+|the\s+)?"
    r"(\d{1,3}(?:[.,]\d{3})+|\d+(?:[.,]\d+)?)\s*(k|dzd|duizend|thousand)?\s*"
    r"(?:km|kilometers?|kilometres?|kilometer)(?!\w)",
    re.IGNORECASE,
)


def _own_car(text: str, start: int) -> bool:
    return _OWN_CAR_BEFORE_RE.search(text[max(0, start - 40) : start]) is not None


def extract_year(text: str) -> int | None:
    """The oldest build year the lead wants ("vanaf 2018", "2019 or newer", "bouwjaar 2020");
    None when no year reads as a wish, or the year is their own car's."""
    for pattern in _MIN_YEAR_RES:
        for match in pattern.finditer(text):
            if not _own_car(text, match.start()):
                return int(match.group(1))
    newer = _NEWER_THAN_RE.search(text)
    if newer and not _own_car(text, newer.start()):
        return int(newer.group(1)) + 1
    return None


def extract_max_mileage(text: str) -> int | None:
    """The most kilometres the lead accepts ("max 100.000 km", "under 80k km", "minder dan
    60.000 km"), in km; None when none is said or it is their own car's."""
    for match in _MAX_MILEAGE_RE.finditer(text):
        if _own_car(text, match.start()):
            continue
        value = parse_number(match.group(1))
        if match.group(2):
            value *= 1000
        km = round(value)
        if 1000 <= km <= 1_000_000:
            return km
    return None


# ---------------------------------------------------------------- time

_DAYS = (
    r"maandag|dinsdag|woensdag|donderdag|vrijdag|zaterdag|zondag|monday|tuesday|wednesday"
    r"|thursday|friday|saturday|sunday|mon|tue|tues|wed|thu|thurs|fri|sat|za|zat"
)
_RELATIVE_DAYS = (
    r"overmorgen|morgen|vandaag|vanmiddag|vanavond|vanochtend|tomorrow|today|tonight|tmrw|tmr"
)
_DAY_PREFIX = r"(?:(?:a\.s\.|aanstaande|komende|volgende|deze|next|this|coming)\s+)"
_DAYPART = (
    r"(?:'s\s*(?:ochtends|middags|avonds)|(?:in\s+de\s+)?(?:ochtend|middag|avond|morgen)"
    r"|(?:in\s+the\s+)?(?:morning|afternoon|evening)|ochtend|middag|avond|morning|afternoon"
    r"|evening|lunchtime|rond\s+lunch|around\s+lunch)"
)
_CLOCK = (
    r"(?:(?:om|at|rond|around|tegen|vanaf|from|na|after|voor|before|tussen|between)\s+)?"
    r"(?:\d{1,2}[:.]\d{2}(?:\s*(?:uur|u|am|pm))?|\d{1,2}\s*(?:uur|u|am|pm|o'clock|h)"
    r"|(?<=om\s)\d{1,2}|(?<=at\s)\d{1,2}|(?<=rond\s)\d{1,2}|(?<=around\s)\d{1,2})"
    r"(?:\s*(?:-|tot|to|and|en)\s*\d{1,2}(?:[:.]\d{2})?(?:\s*(?:uur|u|am|pm))?)?"
)
_DAY_RE = re.compile(
    rf"(?<!\w){_DAY_PREFIX}?(?:{_DAYS}|{_RELATIVE_DAYS})(?:\s*(?:\d{{1,2}}\s*(?:jan|feb|mrt|apr|mei|jun|jul|aug|sep|okt|nov|dec)\w*))?"
    rf"(?:,?\s*{_DAYPART})?(?:,?\s*{_CLOCK})?(?!\w)",
    re.IGNORECASE,
)
_CLOCK_RE = re.compile(rf"(?<!\w)(?:{_DAYPART}\s+)?{_CLOCK}(?!\w)", re.IGNORECASE)
_DAYPART_ALONE_RE = re.compile(rf"(?<!\w){_DAYPART}(?!\w)", re.IGNORECASE)

_URGENT_PHRASES = (
    r"zsm|z\.s\.m\.?|zo snel mogelijk|met spoed|spoed|meteen|asap|a\.s\.a\.p\.?"
    r"|as soon as possible|urgent\w*|right away|deze week|this week|vandaag nog|zo snel als"
    r"|snel een auto|quickly|dringend"
)
_TIMELINE_PHRASES = (
    _URGENT_PHRASES + r"|volgende week|next week|deze maand|this month|volgende maand|next month"
    r"|binnen (?:\d+|een|twee|drie|zes) (?:weken|week|maanden|maand)"
    r"|within (?:\d+|a|one|two|three|six) (?:weeks?|months?)"
    r"|in (?:\d+|a|one|two|three|six) (?:weeks?|months?)"
    r"|over (?:\d+|een|twee|drie|zes) (?:weken|week|maanden|maand)"
    r"|dit jaar|this year|volgend jaar|next year|na de zomer|after the summer|voor de zomer"
    r"|before the summer|this quarter|next quarter|dit kwartaal|volgend kwartaal"
    r"|begin volgend jaar|early next year|eind dit jaar|end of (?:the|this) year"
    r"|(?:in |vanaf |from |by |starting )?q[1-4](?: \d{4})?"
    r"|(?:begin |eind |early |end of |in |na |after |by |voor |before |from |vanaf |starting )?"
    r"(?:januari|februari|maart|april|mei|juni|juli|augustus|september|oktober|november"
    r"|december|january|february|march|june|july|august|october)"
    r"|in (?:the )?(?:spring|summer|autumn|fall|winter|het voorjaar|de zomer|het najaar|de winter)"
)
_TIMELINE_RE = re.compile(rf"(?<!\w)(?:{_TIMELINE_PHRASES})(?!\w)", re.IGNORECASE)
_URGENT_RE = re.compile(rf"(?<!\w)(?:{_URGENT_PHRASES})(?!\w)", re.IGNORECASE)
_LEADING_IN = re.compile(r"^(?:in|by|vanaf|from|starting)\s+(?=q[1-4]|[a-z]+$)", re.IGNORECASE)


def _clean(span: str) -> str:
    return " ".join(span.replace(",", " ").strip(" .").split())


def extract_time(text: str, *, meeting_context: bool) -> str | None:
    """A day and/or time the lead proposes for a visit or call, as they wrote it.

    Only in a message about a meeting (or one answering our question for a day and time):
    "I need a car tomorrow" is a timeline and "are you open on Saturday?" a question, neither
    is a proposed visit.
    """
    if not meeting_context:
        return None
    clock = _CLOCK_RE.search(text)
    for match in _DAY_RE.finditer(text):
        span = _clean(match.group(0))
        if not span:
            continue
        if clock and not match.start() <= clock.start() < match.end():
            # "Tomorrow works, 9:30 ok?": the day and the time, written apart.
            span = f"{span} {_clean(clock.group(0))}"
        return span
    if clock:
        return _clean(clock.group(0))
    part = _DAYPART_ALONE_RE.search(text)
    if part:
        return _clean(part.group(0))
    return None


def extract_timeline(text: str) -> str | None:
    match = _TIMELINE_RE.search(text)
    if not match:
        return None
    return _LEADING_IN.sub("", _clean(match.group(0))).lower()


def is_urgent(text: str) -> bool:
    return _URGENT_RE.search(text) is not None


# ---------------------------------------------------------------- contact and company

_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE_RE = re.compile(r"(?<![\w+])(?:(?:\+|00)\d|0\d)[\d\s\-()]{7,}\d(?!\w)")
_TEAM_SIZE_RE = re.compile(
    r"(?<![\w.,])(\d{1,5})\s*(?:\+\s*)?(?:(?:full[- ]time\s+)?(?:medewerkers|werknemers"
    r"|collega'?s|employees|people|staff|fte|sales ?reps|reps|salespeople|sellers"
    r"|verkopers|sdrs?|bdrs?|aes?|account executives|sales people|in sales|persons))(?!\w)"
    r"|(?:team of|team van|teams? is|we are|we're|we have|headcount of)\s+(?:about |around |ca\. )?"
    r"(\d{1,5})(?!\s*(?:%|k\b|euro|€|years?|months?|weeks?))(?![\w.,]\d)",
    re.IGNORECASE,
)
_COMPANY_RE = re.compile(
    r"(?i:\b(?:i work at|i work for|working at|we are|i'm from|i am from|from|ik werk bij"
    r"|werkzaam bij|namens|our company is|my company is|company is|bedrijf is|here at|ceo of"
    r"|founder of|head of sales at|cto of|vp sales at|coo of|director at|manager at|at))\s+"
    r"([A-Z][\w&\-]*(?:\.[\w&\-]+)*(?:[ \t]+(?:[A-Z][\w&\-]*(?:\.[\w&\-]+)*|&))*)"
)
_NOT_A_COMPANY = frozenset(
    "I Monday Tuesday Wednesday Thursday Friday Saturday Sunday Q1 Q2 Q3 Q4 The A An "
    "Amsterdam Utrecht Rotterdam Europe Germany Netherlands LinkedIn".split()
)
_NAME_RE = re.compile(
    r"(?i:\b(?:my name is|mijn naam is|ik heet|this is|i am|i'm|ik ben|name's|naam is))\s+"
    r"([A-Z][a-zà-ÿ'\-]+(?:\s+(?:van\s+(?:der\s+|den\s+)?|de\s+)?[A-Z][a-zà-ÿ'\-]+)?)"
)
_SIGNATURE_RE = re.compile(
    r"(?:^|\n)\s*(?:(?:met vriendelijke groet|vriendelijke groet|groet(?:en|jes)?|mvg|gr"
    r"|regards|best regards|kind regards|best|cheers|thanks|thank you|br)[,.!]?\s*(?:\n\s*|\s+)"
    r"|[-\u2013\u2014]\s*)"
    r"([A-Z][a-zà-ÿ'\-]+(?:\s+[A-Z][a-zà-ÿ'\-]+)?)\s*$"
)
_NOT_A_NAME = frozenset(
    "Interested Looking Not Just Happy Sorry Busy Available Curious Fine Good Great Here "
    "Still Also Ready Done Glad Afraid Sure Okay Ok Golf Polo Dutch English Back Very Really "
    "On In At From The Bezig Benieuwd Geïnteresseerd Op Niet Wel Nog Al Er Hier Blij Klaar "
    "Thinking Calling Writing Checking Wondering Going".split()
)


def extract_contact(text: str) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {}
    email = _EMAIL_RE.search(text)
    if email:
        fields["email"] = email.group(0).rstrip(".")
    for phone in _PHONE_RE.finditer(text):
        digits = re.sub(r"\D", "", phone.group(0))
        if 9 <= len(digits) <= 15:
            raw = phone.group(0)
            if raw.startswith("00"):
                fields["phone"] = "+" + digits[2:]
            else:
                fields["phone"] = ("+" if raw.startswith("+") else "") + digits
            break
    for pattern in (_NAME_RE, _SIGNATURE_RE):
        for match in pattern.finditer(text):
            candidate = match.group(1)
            if candidate.split()[0] in _NOT_A_NAME:
                continue
            fields["name"] = candidate
            break
        if "name" in fields:
            break
    return fields


def extract_company(text: str) -> str | None:
    for match in _COMPANY_RE.finditer(text):
        name = match.group(1).strip(" .&")
        if name and name.split()[0] not in _NOT_A_COMPANY:
            return name
    return None


_SALES_TEAM_RE = re.compile(
    r"(?:sales\s*team|sales\s*force|verkoopteam|salesteam)\s*(?:is|of|van|:|=)?\s*"
    r"(?:about |around |ca\. )?(\d{1,5})(?![\w.,]\d)",
    re.IGNORECASE,
)
_N_PERSON_RE = re.compile(r"(?<![\w.,])(\d{1,5})[- ](?:person|people|man|koppig\w*)(?!\w)", re.I)


def extract_team_size(text: str) -> int | None:
    """The size of the sales team when the lead says it, else of the company."""
    sales = _SALES_TEAM_RE.search(text)
    if sales:
        return int(sales.group(1))
    sized = _N_PERSON_RE.search(text)
    if sized:
        return int(sized.group(1))
    match = _TEAM_SIZE_RE.search(text)
    if not match:
        return None
    return int(match.group(1) or match.group(2))
