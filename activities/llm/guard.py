"""The reply guard: deterministic checks on every AI reply before it reaches a lead.

A model can be talked into quoting its instructions, invent a price, promise what the business
never promises, or drift into another language. These rules catch that without a second model
call, so they are cheap, repeatable and explainable. The guard only decides and explains; the
caller sends a holding reply instead and escalates to a human.

Rules, in order, first failure wins:
  empty               the reply is empty or whitespace
  leak                the reply shows one of our prompt markers, or repeats a run of >= 8 words
                      of a protected text (system prompt, persona rules) that is not also in
                      what the lead, the knowledge hits or the business's public facts say
  unsupported_amount  the reply names an amount of money nobody gave it (the lead, a knowledge
                      hit, the published facts, or the price of an inventory item the writer
                      was given to cite)
  forbidden_promise   a configured forbidden-promise pattern matches
  wrong_language      the reply is confidently in another allowed language than the lead's
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Literal

from activities.llm.amounts import Amount, find_amounts
from models.agent import GuardVerdict
from models.playbook import ForbiddenPromise

__all__ = [
    "LEAK_MIN_WORDS",
    "ForbiddenPromise",
    "GuardRule",
    "GuardVerdict",
    "check_reply",
    "detect_language",
]

GuardRule = Literal["leak", "unsupported_amount", "forbidden_promise", "wrong_language", "empty"]

# Eight words in a row is long enough that a shared run is a quote, not a coincidence of common
# phrasing ("if you have any questions please let me know" is nine, but it is rarely in a prompt).
LEAK_MIN_WORDS = 8

# Replies this short say too little to tell the language ("Oké, top!", "Thanks, Sanne").
_LANGUAGE_MIN_WORDS = 4


_PASS = GuardVerdict(ok=True)


def check_reply(
    reply: str,
    *,
    lead_language: str | None,
    allowed_languages: Sequence[str],
    lead_texts: Sequence[str],
    knowledge_texts: Sequence[str],
    protected_texts: Sequence[str],
    public_texts: Sequence[str] = (),
    forbidden_promises: Sequence[ForbiddenPromise] = (),
    cited_prices: Sequence[Decimal] = (),
) -> GuardVerdict:
    """Whether `reply` may be sent to the lead, and if not, which rule stopped it and why.

    `cited_prices` are the prices of the inventory items the writer was given to cite: each is
    an accepted amount however the writer formats it ("€ 18.950", "€18,950", "EUR 18950"),
    because the guard compares values, not spellings. A price of any other item is not."""
    if not reply.strip():
        return GuardVerdict(ok=False, rule="empty", reason="the reply is empty")
    sources = (*lead_texts, *knowledge_texts, *public_texts)
    # `or` evaluates lazily: the first failing rule decides and the later ones do not run.
    return (
        _check_markers(reply)
        or _check_leak(reply, protected_texts, sources)
        or _check_amounts(reply, sources, cited_prices)
        or _check_promises(reply, forbidden_promises)
        or _check_language(reply, lead_language, allowed_languages)
        or _PASS
    )


# --- leak ---------------------------------------------------------------------------------------

# The delimiter tags our prompts wrap lead messages, knowledge and system text in, and talk about
# the prompt itself: a reply that shows them is echoing its instructions, whatever else it says.
_MARKER_RE = re.compile(
    r"</?\s*(?:lead_message|knowledge|inventory|system)\b|\bsyste(?:m|em)[\s\-_]?prompts?\b",
    re.IGNORECASE,
)

# Words are runs of letters and digits: punctuation and case are dropped, so "You are Sanne, the
# assistant." and "you are sanne the assistant" share their words.
_WORD_RE = re.compile(r"[^\W_]+")


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


@lru_cache(maxsize=512)
def _shingles(text: str) -> frozenset[tuple[str, ...]]:
    # Cached: protected, public and knowledge texts repeat across every reply of a tenant.
    words = _words(text)
    return frozenset(
        tuple(words[i : i + LEAK_MIN_WORDS]) for i in range(len(words) - LEAK_MIN_WORDS + 1)
    )


def _union(texts: Iterable[str]) -> set[tuple[str, ...]]:
    union: set[tuple[str, ...]] = set()
    for text in texts:
        union |= _shingles(text)
    return union


def _check_markers(reply: str) -> GuardVerdict | None:
    marker = _MARKER_RE.search(reply)
    if marker is None:
        return None
    return GuardVerdict(
        ok=False,
        rule="leak",
        reason=f'the reply contains the prompt marker "{marker.group(0)}"',
    )


def _check_leak(
    reply: str, protected_texts: Sequence[str], sources: Sequence[str]
) -> GuardVerdict | None:
    words = _words(reply)
    if len(words) < LEAK_MIN_WORDS or not protected_texts:
        return None
    protected = _union(protected_texts)
    if not protected:
        return None
    reply_shingles = [
        tuple(words[i : i + LEAK_MIN_WORDS]) for i in range(len(words) - LEAK_MIN_WORDS + 1)
    ]
    shared = protected.intersection(reply_shingles)
    if not shared:
        return None
    # The lead quoting our text back, a knowledge hit or a published fact is not a leak.
    shared -= _union(sources)
    if not shared:
        return None
    # Quote the first leaked run, extended while consecutive shingles leak too.
    first = next(i for i, shingle in enumerate(reply_shingles) if shingle in shared)
    last = first
    while last + 1 < len(reply_shingles) and reply_shingles[last + 1] in shared:
        last += 1
    run = words[first : last + LEAK_MIN_WORDS]
    quoted = " ".join(run[:14]) + (" …" if len(run) > 14 else "")
    return GuardVerdict(
        ok=False,
        rule="leak",
        reason=f'the reply repeats the system prompt or persona rules verbatim: "{quoted}"',
    )


# --- amounts ------------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _amounts_of(text: str) -> tuple[Amount, ...]:
    # Cached like the shingles: knowledge and public texts are checked against every reply.
    return tuple(find_amounts(text))


def _price_amount(price: Decimal) -> Amount:
    return Amount(
        value=int(price.quantize(Decimal(1), rounding=ROUND_HALF_UP)),
        exact=price,
        text=str(price),
        start=0,
        end=0,
    )


def _check_amounts(
    reply: str, sources: Sequence[str], cited_prices: Sequence[Decimal] = ()
) -> GuardVerdict | None:
    mentioned = find_amounts(reply)
    if not mentioned:
        return None
    known = [amount for text in sources for amount in _amounts_of(text)]
    known += [_price_amount(price) for price in cited_prices]
    known_values = {amount.value for amount in known}
    for amount in mentioned:
        if amount.value in known_values or _within_rounding(amount.exact, known):
            continue
        return GuardVerdict(
            ok=False,
            rule="unsupported_amount",
            reason=(
                f"amount {amount.text} is not in the knowledge hits, the cited inventory, "
                "the lead's messages or the business's published facts"
            ),
        )
    return None


def _within_rounding(exact: Decimal, known: Iterable[Amount]) -> bool:
    # Rounding half up makes "€24.950,50" 24951; a reply saying "€24.950" still quotes it.
    return any(abs(exact - amount.exact) < 1 for amount in known)


# --- forbidden promises -------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _check_promises(
    reply: str, forbidden_promises: Sequence[ForbiddenPromise]
) -> GuardVerdict | None:
    # Every language's patterns are tried: a reply in the wrong language must not slip through.
    for promise in forbidden_promises:
        for regexes in promise.patterns.values():
            for pattern in regexes:
                match = _compiled(pattern).search(reply)
                if match is not None:
                    return GuardVerdict(
                        ok=False,
                        rule="forbidden_promise",
                        reason=(
                            f'the reply makes the forbidden promise "{promise.name}": '
                            f'"{match.group(0)}"'
                        ),
                    )
    return None


# --- language -----------------------------------------------------------------------------------

# Common function words per language. Words several competing languages share ("de", "en", "in",
# "is", "die") are dropped per competition in _word_languages, so they need not be avoided here.
_STOP_WORDS: dict[str, frozenset[str]] = {
    "nl": frozenset(
        "de het een en van ik je jij jouw u uw we wij ons onze zij ze is zijn was waren niet "
        "dat die dit deze er op aan met voor naar bij ook maar om als dan nog wel geen heb "
        "hebt heeft hebben kan kunt kunnen wil wilt graag mijn uit tot over hoe wat wanneer "
        "waar welke hier daar nu even bedankt dank groet vriendelijke natuurlijk zeker jullie "
        "komen staat gaat kunnen zou mag moet alvast".split()
    ),
    "en": frozenset(
        "the a an and of to is are was were you your yours we our us i it its this that these "
        "those with for on at by from have has had can could would will should not but or if "
        "about what when where which who how there here just also thanks thank please yes my "
        "me do does be been any happy help let know".split()
    ),
    "de": frozenset(
        "der die das und ist nicht ein eine einen einem mit für auf ich sie wir ihr du zu den "
        "dem des von bei auch aber oder wenn wie was wo noch schon sehr gerne haben hat sind "
        "kann können möchten ihnen uns unser danke bitte gibt wird werden".split()
    ),
    "fr": frozenset(
        "le la les un une et est sont de des du en dans pour avec sur pas ne que qui vous "
        "nous je il elle ce cette mais ou très bien merci bonjour votre notre avez avons peut "
        "pouvez au aux cela ça".split()
    ),
    "es": frozenset(
        "el la los las un una y es son de del en con para por que no se su sus usted ustedes "
        "nosotros yo muy pero como cuando donde gracias hola está están puede tiene tenemos "
        "nuestro al lo".split()
    ),
}

_LETTER_WORD_RE = re.compile(r"[^\W\d_]+")


def _primary(language: str) -> str:
    """'nl-NL' / 'nl_BE' / 'NL' -> 'nl'."""
    return re.split(r"[-_]", language.strip().lower(), maxsplit=1)[0]


@lru_cache(maxsize=64)
def _word_languages(competitors: tuple[str, ...]) -> dict[str, str]:
    """Word -> the one competing language it belongs to; shared words tell nothing."""
    owners: dict[str, list[str]] = {}
    for language in competitors:
        for word in _STOP_WORDS[language]:
            owners.setdefault(word, []).append(language)
    return {word: languages[0] for word, languages in owners.items() if len(languages) == 1}


def detect_language(text: str, allowed: Sequence[str]) -> str | None:
    """The allowed language `text` is written in, or None when unsure.

    Only languages in `allowed` (that we have word lists for: nl, en, de, fr, es) compete. The
    winner needs at least two of its common words and at least twice the runner-up's count.
    Returns the entry of `allowed` as given ("nl-NL" stays "nl-NL").
    """
    by_primary: dict[str, str] = {}
    for language in allowed:
        primary = _primary(language)
        if primary in _STOP_WORDS:
            by_primary.setdefault(primary, language)
    if not by_primary:
        return None
    word_languages = _word_languages(tuple(sorted(by_primary)))
    counts: Counter[str] = Counter(
        word_languages[word]
        for word in _LETTER_WORD_RE.findall(text.lower())
        if word in word_languages
    )
    ranked = counts.most_common(2)
    if not ranked:
        return None
    winner, hits = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0
    if hits < 2 or hits < 2 * runner_up:
        return None
    return by_primary[winner]


def _check_language(
    reply: str, lead_language: str | None, allowed_languages: Sequence[str]
) -> GuardVerdict | None:
    if lead_language is None:
        return None
    lead = _primary(lead_language)
    if lead not in {_primary(language) for language in allowed_languages}:
        return None  # the lead writes a language we do not serve: another flow handles that
    if len(_LETTER_WORD_RE.findall(reply)) < _LANGUAGE_MIN_WORDS:
        return None
    detected = detect_language(reply, allowed_languages)
    if detected is None or _primary(detected) == lead:
        return None
    return GuardVerdict(
        ok=False,
        rule="wrong_language",
        reason=f"the reply is in {_primary(detected)} but the lead writes {lead}",
    )
