"""CSV validation before a job starts, and the formula-safe results writer."""

from __future__ import annotations

import csv
import io

import pytest

from models.csv_intake import CsvInvalid, CsvTooLarge, SafeCsvWriter, neutralise, parse_csv

LIMITS = {"max_bytes": 100_000, "max_rows": 50}


def test_utf8_with_bom_and_semicolons() -> None:
    data = "\ufeffFirma;Website;Stadt\nMüller GmbH;mueller.de;Köln\nAcme;acme.com;Berlin\n"
    parsed = parse_csv(data.encode("utf-8"), **LIMITS)
    assert parsed.encoding == "utf-8-sig"
    assert parsed.delimiter == ";"
    assert parsed.columns == ["Firma", "Website", "Stadt"]
    assert parsed.identifying.company == "Firma" and parsed.identifying.website == "Website"
    assert parsed.rows[0] == {"Firma": "Müller GmbH", "Website": "mueller.de", "Stadt": "Köln"}


def test_latin1_and_tabs() -> None:
    data = "Company\tE-mail\nSöhne & Co\tinfo@soehne.de\n".encode("latin-1")
    parsed = parse_csv(data, **LIMITS)
    assert parsed.encoding == "latin-1"
    assert parsed.delimiter == "\t"
    assert parsed.identifying.email == "E-mail"
    assert parsed.rows == [{"Company": "Söhne & Co", "E-mail": "info@soehne.de"}]


def test_quoted_cells_with_delimiters_and_newlines() -> None:
    data = b'company,notes\n"Acme, Inc.","line one\nline two"\nGlobex,x\n'
    parsed = parse_csv(data, **LIMITS)
    assert parsed.rows[0]["company"] == "Acme, Inc."
    assert parsed.rows[0]["notes"] == "line one\nline two"
    assert len(parsed.rows) == 2


def test_wrong_encoding_is_refused() -> None:
    with pytest.raises(CsvInvalid) as caught:
        parse_csv("company\nAcme\n".encode("utf-16"), **LIMITS)
    assert "encoding" in caught.value.problems[0].problem


def test_no_identifying_column_names_the_columns_found() -> None:
    with pytest.raises(CsvInvalid) as caught:
        parse_csv(b"first,last\nJane,Doe\n", **LIMITS)
    (problem,) = caught.value.problems
    assert problem.line == 1
    assert "no identifying column" in problem.problem
    assert "'first'" in problem.problem


@pytest.mark.parametrize("data", [b"", b"   \n\n"])
def test_empty_file(data: bytes) -> None:
    with pytest.raises(CsvInvalid) as caught:
        parse_csv(data, **LIMITS)
    assert caught.value.problems[0].problem == "the file is empty"


def test_header_only() -> None:
    with pytest.raises(CsvInvalid, match="no rows"):
        parse_csv(b"company,website\n", **LIMITS)


def test_too_many_rows_and_too_many_bytes() -> None:
    rows = "".join(f"Company {i}\n" for i in range(51))
    with pytest.raises(CsvTooLarge) as caught:
        parse_csv(("company\n" + rows).encode(), **LIMITS)
    assert "more than 50 rows" in caught.value.problems[0].problem
    assert caught.value.problems[0].line == 52
    with pytest.raises(CsvTooLarge, match="limit is 100000"):
        parse_csv(b"company\n" + b"x" * 100_001, **LIMITS)


def test_problems_carry_line_numbers() -> None:
    data = b"company,website\nAcme,acme.com\nGlobex,globex.com,extra\n\nInitech,initech.com,x,y\n"
    with pytest.raises(CsvInvalid) as caught:
        parse_csv(data, **LIMITS)
    assert [(p.line, p.problem) for p in caught.value.problems] == [
        (3, "3 cells but the header has 2 columns"),
        (5, "4 cells but the header has 2 columns"),
    ]


def test_duplicate_header() -> None:
    with pytest.raises(CsvInvalid, match="appears twice"):
        parse_csv(b"company,company\na,b\n", **LIMITS)


def test_formula_cells_are_neutralised_in_the_output() -> None:
    for cell in ('=HYPERLINK("http://evil")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert neutralise(cell) == "'" + cell
    assert neutralise("Acme") == "Acme"
    for harmless in ("+14155550100", "+49 (30) 123-4567; +1 415 555 0100", "-12.5"):
        assert neutralise(harmless) == harmless
    assert neutralise("-1 + cmd") == "'-1 + cmd"
    writer = SafeCsvWriter(["company", "email_body"])
    text = writer.header() + writer.row({"company": "=cmd|' /C calc'!A0", "email_body": "Hi,\nBob"})
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["company", "email_body"], ["'=cmd|' /C calc'!A0", "Hi,\nBob"]]
