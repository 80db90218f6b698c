"""The invoice CSV the finance team exports from Reveni's dashboard (docs/invoice-csv.md): a good
file becomes an `InvoiceDoc`; every problem names its line (as a spreadsheet numbers it, header =
line 1) and column, and nothing is returned."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from returnbridge.monthend.invoice import InvoiceFileError, read_invoice_csv, summarize_invoice
from returnbridge.monthend.model import InvoiceKind, InvoiceLine

HEADER = "kind,return_id,order_number,amount,currency,vat_rate,event_date"
GOOD = (
    HEADER,
    "plan,,,299.00,EUR,21,2026-10-01",
    "transaction_fee,r_1,1001,0.90,EUR,21,2026-10-05",
    "instant_transaction_fee,r_1,1001,1.50,EUR,21,2026-10-05",
    "reverse_logistics_fee,r_1,1001,4.95,EUR,21.0,2026-10-07",
    "disbursement,r_1,1001,49.95,SEK,,2026-10-05",
    "disbursement,r_2,1002,-25.00,EUR,0,2026-10-20",
    "minimum_fee_adjustment,,,0.00,EUR,21,",
    "transaction_fee,r_3,,1,JPY,,",
)


def write(tmp_path: Path, lines: tuple[str, ...] | list[str], *, name: str = "invoice.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_good_file_becomes_the_invoice_of_its_period(tmp_path: Path) -> None:
    doc = read_invoice_csv(write(tmp_path, GOOD), period="2026-10")
    assert doc.source == "csv:invoice.csv" and doc.period == "2026-10"
    assert doc.invoice_id is None and doc.status is None and doc.stated_totals == {}
    assert doc.lines[0] == InvoiceLine(
        row=2,
        kind=InvoiceKind.PLAN,
        amount_minor=29900,
        currency="EUR",
        vat_rate=Decimal(21),
        event_date=date(2026, 10, 1),
    )
    assert doc.lines[4] == InvoiceLine(
        row=6,
        kind=InvoiceKind.DISBURSEMENT,
        amount_minor=4995,
        currency="SEK",
        return_id="r_1",
        order_number=1001,
        event_date=date(2026, 10, 5),
    )
    assert doc.lines[5].amount_minor == -2500 and doc.lines[5].vat_rate == 0
    assert doc.lines[6].event_date is None and doc.lines[6].return_id is None
    assert doc.lines[7].amount_minor == 1 and doc.lines[7].currency == "JPY"  # no decimals
    assert [line.row for line in doc.lines] == list(range(2, 10))


def test_columns_in_any_order_spaces_and_blank_lines(tmp_path: Path) -> None:
    lines = [
        "event_date, amount ,kind,currency,vat_rate,order_number,return_id",
        "",
        "2026-10-05, 49.95 ,disbursement,SEK,,1001,r_1",
        ",,,,,,",
    ]
    doc = read_invoice_csv(write(tmp_path, lines), period="2026-10")
    (line,) = doc.lines
    assert (line.row, line.kind, line.amount_minor, line.currency) == (
        3,
        InvoiceKind.DISBURSEMENT,
        4995,
        "SEK",
    )
    assert (line.return_id, line.order_number) == ("r_1", 1001)


def test_excel_csv_utf8_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "Factura octubre.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(GOOD).encode() + b"\r\n")
    doc = read_invoice_csv(path, period="2026-10")
    assert doc.source == "csv:Factura octubre.csv"
    assert doc.lines == read_invoice_csv(write(tmp_path, GOOD), period="2026-10").lines


def test_a_quoted_field_is_read_as_csv(tmp_path: Path) -> None:
    lines = [HEADER, 'disbursement,"r_1",1001,"49.95",SEK,,']
    (line,) = read_invoice_csv(write(tmp_path, lines), period="2026-10").lines
    assert line.return_id == "r_1" and line.amount_minor == 4995


def test_the_summary_of_a_file_has_no_stated_total(tmp_path: Path) -> None:
    summary = summarize_invoice(read_invoice_csv(write(tmp_path, GOOD), period="2026-10"))
    eur = next(t for t in summary.totals if t.currency == "EUR")
    assert eur.fees_net_minor == 29900 + 90 + 150 + 495
    assert eur.disbursements_minor == -2500 and eur.stated_gross_minor is None
    assert eur.agrees is None


def line_of(data: str) -> tuple[str, ...]:
    """The good file with its third line (a transaction fee, file line 3) replaced."""
    return (*GOOD[:2], data, *GOOD[3:])


BAD_LINES = [
    # (data line 3, column, problem fragment)
    ("fee,r_1,1001,0.90,EUR,21,2026-10-05", "kind", "'fee' is not an invoice line kind"),
    ("Transaction_fee,r_1,1001,0.90,EUR,21,", "kind", "accepted: plan, transaction_fee"),
    ("transaction_fee,r_1,1001,0.9O,EUR,21,", "amount", "'0.9O' is not a decimal number"),
    ("transaction_fee,r_1,1001,\"0,90\",EUR,21,", "amount", "'0,90' is not a decimal number"),
    ("transaction_fee,r_1,1001,1e2,EUR,21,", "amount", "is not a decimal number"),
    ("transaction_fee,r_1,1001,,EUR,21,", "amount", "'' is not a decimal number"),
    ("transaction_fee,r_1,1001,12.345,EUR,21,", "amount",
     "'12.345' is finer than a EUR minor unit (2 decimals)"),
    ("transaction_fee,r_1,1001,1.5,JPY,21,", "amount",
     "'1.5' is finer than a JPY minor unit (no decimals)"),
    ("transaction_fee,r_1,1001,0.90,eur,21,", "currency", "'eur' is not a 3-letter ISO 4217"),
    ("transaction_fee,r_1,1001,0.90,EURO,21,", "currency", "'EURO' is not a 3-letter"),
    ("transaction_fee,r_1,1001,0.90,,21,", "currency", "'' is not a 3-letter"),
    ("transaction_fee,r_1,1001,0.90,EUR,21%,", "vat_rate", "'21%' is not a number"),
    ("transaction_fee,r_1,1001,0.90,EUR,-1,", "vat_rate", "'-1' is not a number"),
    ("transaction_fee,r_1,1001,0.90,EUR,121,", "vat_rate", "'121' is not a percent in 0..100"),
    ("disbursement,r_1,1001,0.90,EUR,21,", "vat_rate", "carries no VAT"),
    ("transaction_fee,r_1,1001,0.90,EUR,21,05/10/2026", "event_date",
     "'05/10/2026' is not a date YYYY-MM-DD"),
    ("transaction_fee,r_1,1001,0.90,EUR,21,2026-10-32", "event_date", "is not a date"),
    ("transaction_fee,r_1,1001,0.90,EUR,21,2026-09-30", "event_date",
     "2026-09-30 is outside the period 2026-10"),
    ("transaction_fee,r_1,1001,0.90,EUR,21,2026-11-01", "event_date", "outside the period"),
    ("disbursement,,1001,49.95,SEK,,2026-10-05", "return_id",
     "a disbursement needs the return id"),
    ("disbursement,r 1,1001,49.95,SEK,,", "return_id", "contains spaces"),
    ("disbursement,r_\x001,1001,49.95,SEK,,", "return_id", "control characters"),
    ("disbursement,r_1,1001," + "9" * 5000 + ",SEK,,", "amount",
     "has more than 15 digits before the point"),
    ("disbursement,r_1,#1001,49.95,SEK,,", "order_number", "'#1001' is not an integer"),
    ("disbursement,r_1,1001.0,49.95,SEK,,", "order_number", "is not an integer"),
    ("disbursement,r_1,\u0661\u0660\u0660\u0661,49.95,SEK,,", "order_number", "is not an integer"),
    ("disbursement,r_1,1001,\u0664\u0669.\u0669\u0665,SEK,,", "amount", "is not a decimal number"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "column", "problem"), BAD_LINES)
def test_a_bad_value_names_its_line_and_column(
    tmp_path: Path, data: str, column: str, problem: str
) -> None:
    path = write(tmp_path, line_of(data))
    with pytest.raises(InvoiceFileError) as info:
        read_invoice_csv(path, period="2026-10")
    error = info.value
    assert (error.path, error.row, error.column) == (path, 3, column)
    assert problem in error.problem
    assert str(error).startswith(f"invoice.csv line 3, column {column}: ")
    assert isinstance(error, ValueError)


def test_the_error_message_reads_as_the_docs_show_it(tmp_path: Path) -> None:
    lines = [*GOOD[:6], "transaction_fee,r_1,1001,12.345,EUR,21,2026-10-05"]
    with pytest.raises(InvoiceFileError) as info:
        read_invoice_csv(write(tmp_path, lines), period="2026-10")
    assert str(info.value) == (
        "invoice.csv line 7, column amount: '12.345' is finer than a EUR minor unit (2 decimals)"
    )


def test_the_first_problem_is_reported(tmp_path: Path) -> None:
    lines = [*GOOD, "fee,,,x,eur,,", "plan,,,1.234,EUR,,"]
    with pytest.raises(InvoiceFileError) as info:
        read_invoice_csv(write(tmp_path, lines), period="2026-10")
    assert (info.value.row, info.value.column) == (len(GOOD) + 1, "kind")


@pytest.mark.parametrize(
    ("data", "found"),
    [("plan,,,299.00,EUR,21", 6), ("plan,,,299.00,EUR,21,2026-10-01,extra", 8), ("plan", 1)],
)
def test_a_line_with_the_wrong_number_of_fields(tmp_path: Path, data: str, found: int) -> None:
    with pytest.raises(InvoiceFileError) as info:
        read_invoice_csv(write(tmp_path, line_of(data)), period="2026-10")
    assert (info.value.row, info.value.column) == (3, None)
    assert str(info.value) == f"invoice.csv line 3: expected 7 fields, found {found}"


@pytest.mark.parametrize(
    ("header", "column", "problem"),
    [
        (
            "kind,return_id,order_number,amount,currency,vat_rate",
            "event_date",
            "missing column(s): event_date",
        ),
        (
            "kind,return_id,order_number,amount,currency,vat,event_date",
            "vat",
            "unknown column(s): 'vat'; missing column(s): vat_rate",
        ),
        (
            "kind,return_id,order_number,amount,currency,vat_rate,event_date,note",
            "note",
            "unknown column(s): 'note'",
        ),
        (
            "Kind,return_id,order_number,amount,currency,vat_rate,event_date",
            "Kind",
            "unknown column(s): 'Kind'; missing column(s): kind",
        ),
        (
            "kind,return_id,order_number,amount,amount,currency,vat_rate,event_date",
            "amount",
            "duplicated column(s): amount",
        ),
    ],
)
def test_a_bad_header_names_the_columns(
    tmp_path: Path, header: str, column: str, problem: str
) -> None:
    with pytest.raises(InvoiceFileError) as info:
        read_invoice_csv(write(tmp_path, [header, *GOOD[1:]]), period="2026-10")
    assert (info.value.row, info.value.column) == (1, column)
    assert problem in info.value.problem
    if "duplicated" not in problem:
        assert f"(the header must name {HEADER})" in info.value.problem


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    with pytest.raises(InvoiceFileError) as info:
        read_invoice_csv(path, period="2026-10")
    assert (info.value.path, info.value.row, info.value.column) == (path, None, None)
    assert str(info.value).startswith("nowhere.csv: cannot read the file")


def test_a_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InvoiceFileError, match="cannot read the file"):
        read_invoice_csv(tmp_path, period="2026-10")


def test_a_file_not_in_utf8_names_the_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "invoice.csv"
    text = "\n".join([*GOOD[:3], "disbursement,r_é,1001,49.95,SEK,,"]) + "\n"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(InvoiceFileError) as info:
        read_invoice_csv(path, period="2026-10")
    offset = text.index("é")
    assert (info.value.row, info.value.column) == (4, None)
    assert f"not UTF-8: byte 0xE9 at offset {offset}" in str(info.value)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf", b"  \r\n"])
def test_an_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "invoice.csv"
    path.write_bytes(content)
    with pytest.raises(InvoiceFileError, match=r"^invoice\.csv: the file is empty"):
        read_invoice_csv(path, period="2026-10")


@pytest.mark.parametrize("lines", [[HEADER], [HEADER, "", ",,,,,,"]])
def test_a_file_with_no_lines(tmp_path: Path, lines: list[str]) -> None:
    with pytest.raises(InvoiceFileError) as info:
        read_invoice_csv(write(tmp_path, lines), period="2026-10")
    assert info.value.row is None
    assert "the file has a header but no invoice lines" in str(info.value)


def test_broken_quoting_is_not_valid_csv(tmp_path: Path) -> None:
    lines = [*GOOD[:3], 'disbursement,"r_1,1001,49.95,SEK,,']
    with pytest.raises(InvoiceFileError, match="not valid CSV"):
        read_invoice_csv(write(tmp_path, lines), period="2026-10")


@pytest.mark.parametrize("period", ["2026-13", "2026-1", "October", ""])
def test_a_bad_period_is_the_callers_error(tmp_path: Path, period: str) -> None:
    with pytest.raises(ValueError, match="period: expected YYYY-MM") as info:
        read_invoice_csv(write(tmp_path, GOOD), period=period)
    assert not isinstance(info.value, InvoiceFileError)


def test_december_ends_on_the_31st(tmp_path: Path) -> None:
    lines = [HEADER, "plan,,,299.00,EUR,21,2026-12-31"]
    assert read_invoice_csv(write(tmp_path, lines), period="2026-12").lines[0].event_date == (
        date(2026, 12, 31)
    )
    with pytest.raises(InvoiceFileError, match="outside the period 2027-01"):
        read_invoice_csv(write(tmp_path, lines), period="2027-01")
