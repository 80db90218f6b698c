"""Reveni's invoice of a billing period, normalised into `InvoiceDoc` and summarised
(docs/architecture.md#the-month-end-report, docs/invoice-csv.md).

Two sources, one shape. Reveni documents no invoice API, so the month-end report takes the
invoice either from the API the connector speaks ([INFER], `invoice_from_api`) or from the CSV
the finance team exports from Reveni's dashboard (`read_invoice_csv`). Either way money becomes
integer minor units of its currency, and an amount finer than that unit is refused, never
rounded: a silently rounded invoice would make the settlement "balance" on a number nobody
was billed.

The CSV layout (docs/invoice-csv.md). One header line naming exactly these columns, in any
order, then one line per invoice line:

    kind,return_id,order_number,amount,currency,vat_rate,event_date
    plan,,,299.00,EUR,21,2026-10-01
    transaction_fee,r_1f2e,1001,0.90,EUR,21,2026-10-05
    disbursement,r_1f2e,1001,49.95,SEK,,2026-10-05
    disbursement,r_77aa,1002,-25.00,EUR,,2026-10-20

- `kind`: one of the `InvoiceKind` values (plan, transaction_fee, instant_transaction_fee,
  reverse_logistics_fee, minimum_fee_adjustment, disbursement);
- `return_id`: Reveni's return id; required on a disbursement, optional elsewhere;
- `order_number`: the Centra order number (digits), optional;
- `amount`: a plain decimal with "." (1234.50, -25.00), no finer than the currency's minor
  unit; negative on a disbursement when Reveni credits a refund it covers;
- `currency`: a 3-letter ISO 4217 code in capitals;
- `vat_rate`: percent, 0..100; empty means 0; a disbursement carries no VAT;
- `event_date`: YYYY-MM-DD inside the period, optional.

The file is UTF-8 (a byte-order mark, as Excel writes it, is accepted), lines end in LF or
CRLF, spaces around a value are ignored and blank lines are skipped. The first problem stops
the import with an `InvoiceFileError` naming the line (as a spreadsheet numbers it: the header
is line 1) and the column; nothing is returned half-read.

Pure apart from reading that one file.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from returnbridge.connectors.reveni.models import Invoice, currency_exponent
from returnbridge.monthend.model import (
    InvoiceDoc,
    InvoiceKind,
    InvoiceKindTotal,
    InvoiceLine,
    InvoiceSummary,
    InvoiceTotal,
    Minor,
    Month,
    add_minor,
)

API_SOURCE = "reveni-api"
CSV_COLUMNS: tuple[str, ...] = (
    "kind",
    "return_id",
    "order_number",
    "amount",
    "currency",
    "vat_rate",
    "event_date",
)
KINDS_TEXT = ", ".join(kind.value for kind in InvoiceKind)

_UTC = ZoneInfo("UTC")  # a period names days; only its calendar matters here
_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$", re.ASCII)
_RATE = re.compile(r"^\d+(\.\d+)?$", re.ASCII)
_CURRENCY = re.compile(r"^[A-Z]{3}$", re.ASCII)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_DIGITS = re.compile(r"^\d+$", re.ASCII)
_RETURN_ID = re.compile(r"^[^\s\x00-\x1f\x7f]+$")
_MAX_INTEGER_DIGITS = 15  # 10^15 of a currency: far beyond any invoice; more is a broken file


# ---------------------------------------------------------------------------- shared rules


def _period_bounds(period: str) -> tuple[date, date]:
    """First and last day of `period` (YYYY-MM); ValueError when it is not one."""
    try:
        month = Month.parse(period, _UTC)
    except ValueError:
        raise ValueError(f"period: expected YYYY-MM, got {period!r}") from None
    return month.start.date(), (month.end - timedelta(days=1)).date()


def _decimals_text(currency: str) -> str:
    exponent = currency_exponent(currency)
    return "no decimals" if exponent == 0 else f"{exponent} decimal{'s' * (exponent != 1)}"


def _finer(amount: Decimal, currency: str) -> int | None:
    """`amount` in `currency`'s minor units, or None when it is finer than one (the caller
    says where; nothing is rounded away)."""
    scaled = amount.scaleb(currency_exponent(currency))
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def _order_number(text: str | None) -> int | None:
    """A Centra order number from the API's text: digits (an optional leading "#", as
    `OrderRef.number` reads it) -> int, anything else None."""
    if text is None:
        return None
    text = text.strip().lstrip("#")
    return int(text) if _DIGITS.fullmatch(text) else None


# ---------------------------------------------------------------------------- the API


def invoice_from_api(invoices: Sequence[Invoice], period: str) -> InvoiceDoc | None:
    """Reveni's invoice(s) of `period` (YYYY-MM) as one `InvoiceDoc`, or None when there is none.

    Invoices whose `period_start` is in another month are left out, so the caller may pass the
    API's whole list. Several in the period (a correction, say) are one document: lines in
    turn (each line's `row` is its 1-based position in its own invoice), ids joined with "+",
    stated totals summed. ValueError, naming the invoice and line, for an amount finer than its
    currency's minor unit or a VAT rate outside 0..100."""
    first, _ = _period_bounds(period)
    chosen = [
        inv
        for inv in invoices
        if (inv.period_start.year, inv.period_start.month) == (first.year, first.month)
    ]
    if not chosen:
        return None
    lines: list[InvoiceLine] = []
    stated: Minor = {}
    for inv in chosen:
        for row, wire in enumerate(inv.lines, start=1):
            where = f"invoice {inv.id} line {row}"
            minor = _finer(wire.amount, wire.currency)
            if minor is None:
                raise ValueError(
                    f"{where}: amount {wire.amount} {wire.currency} is finer than a "
                    f"{wire.currency} minor unit ({_decimals_text(wire.currency)})"
                )
            if not 0 <= wire.vat_rate <= 100:
                raise ValueError(f"{where}: vat_rate {wire.vat_rate} is not a percent in 0..100")
            lines.append(
                InvoiceLine(
                    row=row,
                    kind=InvoiceKind(wire.kind),
                    amount_minor=minor,
                    currency=wire.currency,
                    vat_rate=wire.vat_rate,
                    return_id=wire.return_id,
                    order_number=_order_number(wire.order_number),
                    event_date=wire.event_date,
                )
            )
        for currency, amount in inv.totals.items():
            minor = _finer(amount, currency)
            if minor is None:
                raise ValueError(
                    f"invoice {inv.id} totals: {amount} {currency} is finer than a {currency} "
                    f"minor unit ({_decimals_text(currency)})"
                )
            add_minor(stated, currency, minor)
    return InvoiceDoc(
        source=API_SOURCE,
        period=period,
        lines=tuple(lines),
        invoice_id="+".join(inv.id for inv in chosen),
        status=_status(chosen),
        stated_totals=dict(sorted(stated.items())),
    )


def _status(invoices: Iterable[Invoice]) -> str | None:
    """open | issued when the API says so. The connector's `Invoice` model does not carry the
    status the API sends yet, so this reads it only when present; several invoices: "open" if
    any is open (the period is not closed), else their common status."""
    statuses = {s for inv in invoices if isinstance(s := getattr(inv, "status", None), str)}
    if "open" in statuses:
        return "open"
    return statuses.pop() if len(statuses) == 1 else None


# ---------------------------------------------------------------------------- the CSV file


class InvoiceFileError(ValueError):
    """An invoice CSV file that cannot be imported, and where: `row` is the line as a
    spreadsheet numbers it (header = 1; None for the file as a whole), `column` the column's
    header name (None when the problem is the line or the file), `problem` what is wrong."""

    def __init__(self, path: Path, row: int | None, column: str | None, problem: str) -> None:
        self.path = path
        self.row = row
        self.column = column
        self.problem = problem
        where = path.name
        if row is not None:
            where += f" line {row}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {problem}")


def read_invoice_csv(path: Path, *, period: str) -> InvoiceDoc:
    """The invoice of `period` (YYYY-MM) from the dashboard export at `path` (layout in the
    module docstring). Strict: the first problem raises `InvoiceFileError` and nothing is
    returned, because half an invoice would settle as if the rest did not exist. ValueError
    (not a file error) when `period` itself is not YYYY-MM."""
    first, last = _period_bounds(period)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvoiceFileError(path, None, None, f"cannot read the file: {exc.strerror}") from exc
    text = _decode(path, raw)
    if not text.strip():
        raise InvoiceFileError(
            path, None, None, f"the file is empty (expected a header: {','.join(CSV_COLUMNS)})"
        )
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        for number, record in enumerate(reader, start=1):
            records.append((number, [field.strip() for field in record]))
    except csv.Error as exc:
        raise InvoiceFileError(path, len(records) + 1, None, f"not valid CSV: {exc}") from exc
    (_, header), body = records[0], records[1:]
    index = _header(path, header)
    lines = [
        _csv_line(path, number, fields, index, first, last)
        for number, fields in body
        if any(fields)  # a blank line (Excel leaves some) is not an invoice line
    ]
    if not lines:
        raise InvoiceFileError(path, None, None, "the file has a header but no invoice lines")
    return InvoiceDoc(source=f"csv:{path.name}", period=period, lines=tuple(lines))


def _decode(path: Path, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvoiceFileError(
            path,
            line,
            None,
            f"not UTF-8: byte 0x{raw[exc.start]:02X} at offset {exc.start} "
            "(export or save the file as CSV UTF-8)",
        ) from exc
    return text.removeprefix("\ufeff")


def _header(path: Path, header: list[str]) -> dict[str, int]:
    """Column name -> position; InvoiceFileError naming duplicated, unknown or missing ones."""
    seen: dict[str, int] = {}
    duplicated: list[str] = []
    for position, name in enumerate(header):
        if name in seen and name not in duplicated:
            duplicated.append(name)
        seen.setdefault(name, position)
    if duplicated:
        names = ", ".join(duplicated)
        raise InvoiceFileError(path, 1, names, f"duplicated column(s): {names}")
    unknown = [name for name in header if name not in CSV_COLUMNS]
    missing = [name for name in CSV_COLUMNS if name not in seen]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append("unknown column(s): " + ", ".join(repr(name) for name in unknown))
        if missing:
            parts.append("missing column(s): " + ", ".join(missing))
        column = ", ".join(unknown or missing)
        problem = "; ".join(parts) + f" (the header must name {','.join(CSV_COLUMNS)})"
        raise InvoiceFileError(path, 1, column, problem)
    return seen


def _csv_line(
    path: Path, row: int, fields: list[str], index: dict[str, int], first: date, last: date
) -> InvoiceLine:
    """One data line, validated column by column (kind, return_id, order_number, currency,
    amount, vat_rate, event_date: the first problem is reported)."""
    if len(fields) != len(CSV_COLUMNS):
        raise InvoiceFileError(
            path, row, None, f"expected {len(CSV_COLUMNS)} fields, found {len(fields)}"
        )

    def fail(column: str, problem: str) -> InvoiceFileError:
        return InvoiceFileError(path, row, column, problem)

    value = {name: fields[index[name]] for name in CSV_COLUMNS}

    kind_text = value["kind"]
    if kind_text not in InvoiceKind._value2member_map_:
        raise fail("kind", f"{kind_text!r} is not an invoice line kind (accepted: {KINDS_TEXT})")
    kind = InvoiceKind(kind_text)

    return_id = value["return_id"] or None
    if return_id is None and kind is InvoiceKind.DISBURSEMENT:
        raise fail("return_id", "a disbursement needs the return id it refunds")
    if return_id is not None and not _RETURN_ID.fullmatch(return_id):
        raise fail("return_id", f"{return_id!r} contains spaces, line breaks or control characters")

    order_text = value["order_number"]
    if order_text and not _DIGITS.fullmatch(order_text):
        raise fail("order_number", f"{order_text!r} is not an integer order number")
    order_number = int(order_text) if order_text else None

    currency = value["currency"]
    if not _CURRENCY.fullmatch(currency):
        raise fail("currency", f"{currency!r} is not a 3-letter ISO 4217 code like EUR")

    amount_text = value["amount"]
    if not _DECIMAL.fullmatch(amount_text):
        raise fail("amount", f"{amount_text!r} is not a decimal number like 1234.50 or -25.00")
    if len(amount_text.lstrip("-").split(".")[0].lstrip("0")) > _MAX_INTEGER_DIGITS:
        shown = amount_text if len(amount_text) <= 24 else amount_text[:20] + "..."
        raise fail(
            "amount", f"{shown!r} has more than {_MAX_INTEGER_DIGITS} digits before the point"
        )
    amount_minor = _finer(Decimal(amount_text), currency)
    if amount_minor is None:
        raise fail(
            "amount",
            f"{amount_text!r} is finer than a {currency} minor unit ({_decimals_text(currency)})",
        )

    rate_text = value["vat_rate"]
    if rate_text and not _RATE.fullmatch(rate_text):
        raise fail("vat_rate", f"{rate_text!r} is not a number (a percent like 21 or 5.5)")
    vat_rate = Decimal(rate_text) if rate_text else Decimal(0)
    if vat_rate > 100:
        raise fail("vat_rate", f"{rate_text!r} is not a percent in 0..100")
    if vat_rate and kind is InvoiceKind.DISBURSEMENT:
        raise fail("vat_rate", f"{rate_text!r} on a disbursement, which carries no VAT")

    event_date = _event_date(value["event_date"], first, last, fail)
    return InvoiceLine(
        row=row,
        kind=kind,
        amount_minor=amount_minor,
        currency=currency,
        vat_rate=vat_rate,
        return_id=return_id,
        order_number=order_number,
        event_date=event_date,
    )


def _event_date(
    text: str, first: date, last: date, fail: Callable[[str, str], InvoiceFileError]
) -> date | None:
    if not text:
        return None
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        when = date.fromisoformat(text)
    except ValueError:
        raise fail("event_date", f"{text!r} is not a date YYYY-MM-DD") from None
    if not first <= when <= last:
        raise fail("event_date", f"{text} is outside the period {first:%Y-%m}")
    return when


# ---------------------------------------------------------------------------- the summary


def summarize_invoice(doc: InvoiceDoc) -> InvoiceSummary:
    """The invoice as the report shows it: per kind (InvoiceKind order) and currency the lines'
    count, net and VAT (each line's VAT rounded half-up, as an invoice rounds it), and per
    currency the fees (net), VAT, disbursements and the gross the document states, if any, so
    the report can say whether the invoice adds up."""
    net: dict[tuple[InvoiceKind, str], int] = {}
    vat: dict[tuple[InvoiceKind, str], int] = {}
    count: dict[tuple[InvoiceKind, str], int] = {}
    for line in doc.lines:
        key = (line.kind, line.currency)
        net[key] = net.get(key, 0) + line.amount_minor
        vat[key] = vat.get(key, 0) + line.vat_minor
        count[key] = count.get(key, 0) + 1
    order = list(InvoiceKind)
    keys = sorted(count, key=lambda key: (order.index(key[0]), key[1]))
    by_kind = tuple(
        InvoiceKindTotal(
            kind=key[0], currency=key[1], lines=count[key], net_minor=net[key], vat_minor=vat[key]
        )
        for key in keys
    )
    currencies = sorted({currency for _, currency in count} | set(doc.stated_totals))
    totals = tuple(
        InvoiceTotal(
            currency=currency,
            fees_net_minor=sum(
                t.net_minor
                for t in by_kind
                if t.currency == currency and t.kind is not InvoiceKind.DISBURSEMENT
            ),
            vat_minor=sum(t.vat_minor for t in by_kind if t.currency == currency),
            disbursements_minor=sum(
                t.net_minor
                for t in by_kind
                if t.currency == currency and t.kind is InvoiceKind.DISBURSEMENT
            ),
            stated_gross_minor=doc.stated_totals.get(currency),
        )
        for currency in currencies
    )
    return InvoiceSummary(
        source=doc.source,
        invoice_id=doc.invoice_id,
        status=doc.status,
        by_kind=by_kind,
        totals=totals,
    )
