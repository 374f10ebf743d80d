"""Money amounts in free text, written the Dutch or the English way.

The reply guard uses this to check that every amount an AI reply names was given to it (by the
lead, a knowledge hit or the business's published facts), so it only counts what is clearly money:
a number with a currency sign, word or code ("€25.000", "25.000 euro", "EUR 19.999,-", "$30,000",
"£200"), or with a thousands suffix ("25k", "1.5k", "25 duizend", "5 grand"). Plain numbers are
not money: years, mileage ("45.000 km", "45k km"), phone numbers, door counts, percentages, model
names ("ID.3", "A3") and times ("10:00") would otherwise make the guard block honest replies.

Values are whole currency units, rounded half up: "€19.999,50" is 20000 and "€299,49" is 299.
`find_amounts` also keeps the exact value, so a caller comparing amounts can tolerate the
rounding ("€24.950,50" in a knowledge hit supports "€24.950" in a reply).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

__all__ = ["Amount", "amounts_in", "find_amounts", "parse_number"]


class Amount(NamedTuple):
    """One amount of money as it appears in a text."""

    value: int  # whole currency units, rounded half up
    exact: Decimal  # before rounding: 19999.50 for "€19.999,50"
    text: str  # the span as written, for messages: "€ 19.999,-"
    start: int
    end: int


# A number: grouped thousands with optional 1-2 decimals ("25.000", "25,000", "25.000,50",
# "1,234,567.89"), or digits with an optional decimal part ("2019", "1.5", "2,5").
# Not preceded by a digit, separator or colon, so "ID.3", "10:00" and the tail of "1.2.3" are
# not numbers on their own; a letter right before is checked in code (only "EUR25" is money).
_NUMBER_RE = re.compile(
    r"(?<![\d.,:])(\d{1,3}(?:[.,]\d{3})+(?:[.,]\d{1,2})?(?!\d)|\d+(?:[.,]\d+)?)"
)

# What may follow the number, in this order: the Dutch ",-" (no cents), a multiplier, another
# ",-", then a currency. "k" and "m" must be attached ("25k", not "25 k"), because a detached
# letter is more often something else; the multiplier words may stand apart ("25 duizend").
_SUFFIX_RE = re.compile(
    r"(?P<dash>\s?,[-=]{1,2})?"
    r"(?:(?P<k>k)(?!\w)|\s*(?P<thousand>duizend|thousand|grand|mille)(?!\w)"
    r"|(?P<m>m)(?!\w)|\s*(?P<million>mln|mio|miljoen|million)(?!\w))?"
    r"(?P<dash2>\s?,[-=]{1,2})?"
    r"(?P<currency>\s*(?:€|euro'?s?|eur|dollars?|usd|pounds?|gbp)(?!\w))?",
    re.IGNORECASE,
)

# A currency right before the number: "€25.000", "€ 25.000", "EUR 19.999", "US$30,000", "£200".
# The code must start a word, so "deur 5" is not "eur 5".
_PREFIX_RE = re.compile(
    r"(?:[€$£]|(?<![^\W\d_])(?:eur|euro|usd|gbp))\s{0,2}$",
    re.IGNORECASE,
)
_PREFIX_WINDOW = 8  # "euro" and two spaces, plus the character before the code

# A thousands suffix is money unless a distance follows: "45k km" is mileage, not a price.
_DISTANCE_AFTER_RE = re.compile(
    r"\s*(?:km|kilometers?|kilometres?|miles?|mijl|mi)(?!\w)", re.IGNORECASE
)

# Ranges name the unit once: "€20-25k", "20 tot 25 duizend euro", "between 20 and 25k" (joined
# by a hyphen, an en or em dash, or a word).
_RANGE_GAP_RE = re.compile(r"\s*(?:-|\u2013|\u2014|tot|to|t/m|à|a)\s*", re.IGNORECASE)
_AND_GAP_RE = re.compile(r"\s*(?:en|and)\s*", re.IGNORECASE)
_BETWEEN_BEFORE_RE = re.compile(r"(?:tussen|between)\s*(?:[€$£]\s?)?$", re.IGNORECASE)

# A bare year does not borrow a currency from the next number: "2019 - 25.000 euro".
_YEAR_RE = re.compile(r"(?:19[5-9]\d|20[0-4]\d)")

_THOUSAND = Decimal(1000)
_MILLION = Decimal(1_000_000)


def parse_number(number: str) -> Decimal:
    """'25.000' / '25,000' / '25.000,50' / '1,234.5' / '2,5' / '2.5' -> exact value.

    A separator followed by exactly three digits groups thousands; a last separator followed by
    one or two digits starts the decimals. So "2.500" is 2500 and "2.50" is 2.5, whichever of
    "." and "," the writer uses.
    """
    if re.fullmatch(r"\d{1,3}(?:[.,]\d{3})+(?:[.,]\d{1,2})?", number):
        decimals = ""
        last = re.search(r"[.,](\d{1,2})$", number)
        if last:
            decimals = last.group(1)
            number = number[: last.start()]
        whole = re.sub(r"[.,]", "", number)
        return Decimal(f"{whole}.{decimals}" if decimals else whole)
    return Decimal(number.replace(",", "."))


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


class _Candidate(NamedTuple):
    raw: str
    start: int  # of the whole span, prefix included
    number_start: int
    number_end: int
    end: int  # of the whole span, suffix included
    prefix: bool
    suffix_currency: bool
    multiplier: Decimal | None


def _candidates(text: str) -> list[_Candidate]:
    found: list[_Candidate] = []
    for match in _NUMBER_RE.finditer(text):
        raw = match.group(1)
        number_start, number_end = match.span(1)
        window = text[max(0, number_start - _PREFIX_WINDOW) : number_start]
        prefix_match = _PREFIX_RE.search(window)
        prefix = prefix_match is not None
        if not prefix and number_start > 0 and text[number_start - 1].isalpha():
            continue  # "A3", "Q5", "X1": a model name, not an amount
        suffix = _SUFFIX_RE.match(text, number_end)
        assert suffix is not None  # every part of the suffix is optional
        multiplier: Decimal | None = None
        if suffix.group("k") or suffix.group("thousand"):
            multiplier = _THOUSAND
        elif suffix.group("million") or (
            suffix.group("m") and (prefix or suffix.group("currency"))
        ):
            # A bare "2m" is two metres; "€2m" is two million.
            multiplier = _MILLION
        if multiplier or suffix.group("currency"):
            suffix_end = suffix.end()
        elif suffix.group("dash"):
            suffix_end = suffix.end("dash")  # keep "19.999,-" whole in messages
        else:
            suffix_end = number_end
        start = number_start - len(prefix_match.group(0)) if prefix_match else number_start
        found.append(
            _Candidate(
                raw=raw,
                start=start,
                number_start=number_start,
                number_end=number_end,
                end=suffix_end,
                prefix=prefix,
                suffix_currency=bool(suffix.group("currency")),
                multiplier=multiplier,
            )
        )
    return found


def _is_money(candidate: _Candidate, text: str) -> bool:
    if candidate.prefix or candidate.suffix_currency:
        return True
    if candidate.multiplier is None:
        return False
    return _DISTANCE_AFTER_RE.match(text, candidate.end) is None


def _range_partner(first: _Candidate, second: _Candidate, text: str) -> bool:
    """True when `first` opens a range that `second` closes and names the unit for."""
    gap = text[first.number_end : second.start]
    if _RANGE_GAP_RE.fullmatch(gap):
        return True
    before = text[max(0, first.start - 12) : first.start]
    return bool(_AND_GAP_RE.fullmatch(gap) and _BETWEEN_BEFORE_RE.search(before))


def find_amounts(text: str) -> list[Amount]:
    """Every amount of money in `text`, in order of appearance."""
    candidates = _candidates(text)
    amounts: list[Amount] = []
    for index, candidate in enumerate(candidates):
        multiplier = candidate.multiplier
        money = _is_money(candidate, text)
        following = candidates[index + 1] if index + 1 < len(candidates) else None
        if (
            following is not None
            and candidate.multiplier is None
            and candidate.end == candidate.number_end  # "€20,- tot" has its own unit
            and _range_partner(candidate, following, text)
        ):
            first = parse_number(candidate.raw)
            second = parse_number(following.raw)
            # "20-25k": the first end borrows the multiplier when it is the smaller number
            # before multiplying ("2019 tot 25k" is a year and a budget, not a range).
            if following.multiplier is not None and first < second:
                multiplier = following.multiplier
                money = money or _is_money(following, text)
            elif following.suffix_currency and not following.prefix:
                # "20.000 - 25.000 euro"; but "2021 - €24.950" is a year and a price.
                money = money or not _YEAR_RE.fullmatch(candidate.raw)
        if not money:
            continue
        exact = parse_number(candidate.raw) * (multiplier or 1)
        amounts.append(
            Amount(
                value=_round(exact),
                exact=exact,
                text=text[candidate.start : candidate.end].strip(),
                start=candidate.start,
                end=candidate.end,
            )
        )
    return amounts


def amounts_in(text: str) -> frozenset[int]:
    """The amounts of money in `text`, in whole currency units (rounded half up)."""
    return frozenset(amount.value for amount in find_amounts(text))
