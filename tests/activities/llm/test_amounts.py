"""Money amounts in free text: what counts as money, what does not, and the values."""

from __future__ import annotations

from decimal import Decimal

import pytest

from activities.llm.amounts import amounts_in, find_amounts, parse_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The formats of the brief, Dutch and English.
        ("€25.000", {25000}),
        ("€ 25,000", {25000}),
        ("25.000 euro", {25000}),
        ("EUR 19.999,-", {19999}),
        ("25k", {25000}),
        ("25K", {25000}),
        ("€25k", {25000}),
        ("2k", {2000}),
        ("1.5k", {1500}),
        ("2,5k", {2500}),
        ("$30,000", {30000}),
        ("US$30,000", {30000}),
        ("£200", {200}),
        ("300 euro per maand", {300}),
        ("€ 299 p/m", {299}),
        ("25 duizend", {25000}),
        ("25 duizend euro", {25000}),
        ("5 grand", {5000}),
        ("30 thousand dollars", {30000}),
        ("EUR25", {25}),
        ("eur 250", {250}),
        ("25.000 EUR", {25000}),
        ("25.000,- euro", {25000}),
        ("€ 19.999,- p/m", {19999}),
        ("25.000 €", {25000}),
        ("200 euro's", {200}),
        ("1,5 mln euro", {1_500_000}),
        ("€2m", {2_000_000}),
        ("€1,234,567.89", {1_234_568}),
        # Rounding: whole units, half up.
        ("€19.999,50", {20000}),
        ("€19.999,49", {19999}),
        ("€ 2,50", {3}),
        ("€0", {0}),
        # Ranges name the unit once.
        ("€20-25k", {20000, 25000}),
        ("20.000 - 25.000 euro", {20000, 25000}),
        ("tussen 20 en 25 duizend euro", {20000, 25000}),
        ("between 20 and 25k", {20000, 25000}),
        ("1.5-2k", {1500, 2000}),
        ("200 tot 300 euro per maand", {200, 300}),
        ("€20.000 \u2013 €25.000", {20000, 25000}),  # en dash
        # Whole sentences.
        ("De Golf 1.5 TSI uit 2021 staat voor €24.950 bij ons", {24950}),
        ("Mijn budget is max 25k, liefst een auto uit 2019 met < 80.000 km", {25000}),
        ("The 2020 Audi A3 with 45,000 miles is $30,000, call 555-1234", {30000}),
        ("Lease vanaf € 299 p/m, of koop voor € 19.999,-", {299, 19999}),
        ("Ik heb een Polo uit 2015 en kan 2k aanbetalen", {2000}),
        ("Aanbetaling 2.000 euro en 250 per maand", {2000}),
    ],
)
def test_amounts_in(text: str, expected: set[int]) -> None:
    assert amounts_in(text) == frozenset(expected)


@pytest.mark.parametrize(
    "text",
    [
        "2019",
        "een auto uit 2019",
        "model year 2021",
        "45.000 km",
        "45,000 miles",
        "45k km",
        "45k miles",
        "60 duizend kilometer",
        "06-12345678",
        "+31 6 12345678",
        "bel ons op 020 123 4567",
        "call (555) 123-4567",
        "5 doors",
        "5 deuren",
        "4,9%",
        "0.9% APR",
        "ID.3",
        "VW ID.4 Pro",
        "A3",
        "Audi Q5 2.0 TFSI",
        "BMW X1",
        "10:00",
        "zaterdag om 10:30",
        "150 pk",
        "1.5 TSI",
        "2m",
        "25 m2",
        "een deur 5",
        "2019 tot 25.000 km",
        "12/05/2024",
        "Peugeot 3008",
    ],
)
def test_not_money(text: str) -> None:
    assert amounts_in(text) == frozenset()


def test_year_next_to_a_price_stays_a_year() -> None:
    # A range joiner between a year and a price must not make the year money.
    assert amounts_in("Golf uit 2021 - €24.950") == {24950}
    assert amounts_in("2019 tot 25k") == {25000}
    assert amounts_in("2019 - 25.000 euro") == {25000}


def test_find_amounts_keeps_the_span_and_the_exact_value() -> None:
    text = "Lease vanaf € 299,- p/m of koop voor EUR 19.999,50"
    found = find_amounts(text)
    assert [(a.text, a.value, a.exact) for a in found] == [
        ("€ 299,-", 299, Decimal(299)),
        ("EUR 19.999,50", 20000, Decimal("19999.50")),
    ]
    for amount in found:
        assert text[amount.start : amount.end].strip() == amount.text


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("25.000", Decimal(25000)),
        ("25,000", Decimal(25000)),
        ("25.000,50", Decimal("25000.50")),
        ("25,000.50", Decimal("25000.50")),
        ("1.234.567", Decimal(1234567)),
        ("2,5", Decimal("2.5")),
        ("2.5", Decimal("2.5")),
        ("2.50", Decimal("2.50")),
        ("2.500", Decimal(2500)),
        ("19999", Decimal(19999)),
    ],
)
def test_parse_number(number: str, expected: Decimal) -> None:
    assert parse_number(number) == expected


def test_same_amount_written_differently_is_equal() -> None:
    spellings = ["€25.000", "€ 25,000", "25.000 euro", "25k", "€25K", "25 duizend", "EUR 25.000,-"]
    assert {amounts_in(text) for text in spellings} == {frozenset({25000})}
