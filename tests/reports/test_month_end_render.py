"""render_month_end: every section with the data's numbers, the subject, the text part, a
self-contained e-mail and file, escaping, the empty month, line limits and the charts."""

from __future__ import annotations

import base64
import dataclasses
import re
from html.parser import HTMLParser

import pytest
from monthend_samples import (
    SAMPLE_NOTES,
    UNBALANCED_OFF_MINOR,
    empty_report,
    sample_report,
    unbalanced_report,
)

from reports.charts import (
    MONEY_BY_METHOD_CID,
    TREND_CID,
    group_thousands,
    money_by_method_chart,
    png_size,
    trend_chart,
)
from reports.month_end import RenderedReport, format_money, render_month_end, subject_of
from returnbridge.monthend.model import (
    INVOICE_KIND_LABELS,
    PAID_BY_LABELS,
    InvoiceKind,
    Match,
    MonthEndReport,
    PaidBy,
    SettlementLine,
    Side,
    TrendPoint,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NONE = "\u2013"  # the en dash of an empty amount cell
DETAIL_003 = "instant refund; return rejected at inspection"


# --------------------------------------------------------------------------- reading the HTML


class _Cells(HTMLParser):
    """The page's table rows as lists of cell texts, and its visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.chunks: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "title"):
            self._skip += 1
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br":
            self._data(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title"):
            self._skip -= 1
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(_squash("".join(self._cell)))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        if tag in ("td", "th", "tr", "p", "h1", "h2", "h3", "caption", "li"):
            self.chunks.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._data(data)

    def _data(self, data: str) -> None:
        self.chunks.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _squash(text: str) -> str:
    """Runs of ASCII whitespace and no-break spaces (a layout device: "Invoice row 5" must not
    wrap) as one space; the thin space inside amounts is kept."""
    return re.sub(r"[ \t\r\n\u00a0]+", " ", text).strip()


def parse(html: str) -> _Cells:
    cells = _Cells()
    cells.feed(html)
    cells.close()
    return cells


def rows_of(html: str) -> list[list[str]]:
    return parse(html).rows


def text_of(html: str) -> str:
    return _squash("".join(parse(html).chunks))


def section(html: str, section_id: str) -> str:
    """The HTML of the `<td id="section_id">` cell (up to the next section's cell)."""
    start = html.rindex("<", 0, html.index(f'id="{section_id}"'))
    following = re.search(r'<td [^>]*id="[a-z-]+"', html[start + 1 :])
    end = start + 1 + following.start() if following else len(html)
    return html[start:end]


@pytest.fixture(scope="module")
def report() -> MonthEndReport:
    return sample_report()


@pytest.fixture(scope="module")
def rendered(report: MonthEndReport) -> RenderedReport:
    return render_month_end(report)


def eur(minor: int) -> str:
    return format_money(minor, "EUR")


def sek(minor: int) -> str:
    return format_money(minor, "SEK")


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("minor", "currency", "expected"),
    [
        (123_450, "EUR", "1\u2009234.50 EUR"),
        (123_456_789, "SEK", "1\u2009234\u2009567.89 SEK"),
        (99_900, "EUR", "999.00 EUR"),
        (0, "EUR", "0.00 EUR"),
        (-300, "SEK", "-3.00 SEK"),
        (-123_450, "EUR", "-1\u2009234.50 EUR"),
        (150_000, "JPY", "150\u2009000 JPY"),
        (1_234_567, "KWD", "1\u2009234.567 KWD"),
    ],
)
def test_money_is_grouped_with_the_currency_s_decimals(
    minor: int, currency: str, expected: str
) -> None:
    assert format_money(minor, currency) == expected


def test_grouping_leaves_short_numbers_alone() -> None:
    assert group_thousands("12") == "12"
    assert group_thousands("-999.99") == "-999.99"
    assert group_thousands("1000", ",") == "1,000"


# --------------------------------------------------------------------------- the subject


def test_subject_says_what_was_disbursed_whether_it_balances_and_the_exceptions(
    rendered: RenderedReport,
) -> None:
    assert rendered.subject == (
        f"Returns month-end 2026-10: {eur(123_450)} + {sek(1_246_500)} disbursed, balanced, "
        "6 settlement exceptions"
    )
    assert "\n" not in rendered.subject


def test_subject_names_the_currency_that_does_not_balance() -> None:
    subject = subject_of(unbalanced_report())
    assert f"{sek(1_246_500 + UNBALANCED_OFF_MINOR)} disbursed" in subject
    assert "NOT balanced (SEK)" in subject


def test_subject_of_a_month_missing_its_data_says_incomplete_not_empty() -> None:
    report = empty_report(incomplete=("no warehouse data",))
    assert subject_of(report) == (
        "Returns month-end 2026-10: INCOMPLETE (no warehouse data): no returns, refunds or "
        "invoice lines"
    )
    assert subject_of(sample_report(incomplete=("data loaded before the month ended",))).startswith(
        "Returns month-end 2026-10: INCOMPLETE (data loaded before the month ended): "
    )


def test_subject_of_a_month_without_invoice_or_exceptions() -> None:
    base = sample_report()
    quiet = dataclasses.replace(
        base,
        invoice=None,
        settlement=dataclasses.replace(
            base.settlement,
            lines=tuple(x for x in base.settlement.lines if x.match is Match.MATCHED),
        ),
    )
    subject = subject_of(quiet)
    assert subject.startswith("Returns month-end 2026-10: no invoice, ")
    assert subject.endswith("no settlement exceptions")
    assert subject_of(empty_report()) == (
        "Returns month-end 2026-10: no returns, refunds or invoice lines"
    )


# --------------------------------------------------------------------------- the header


def test_header_shows_month_timezone_times_and_notes(rendered: RenderedReport) -> None:
    header = text_of(section(rendered.html_email, "header"))
    assert "Returns month-end: October 2026" in header
    assert "2026-10 · 2026-10-01 to 2026-10-31 (Europe/Stockholm)" in header
    assert "Generated 2026-11-02 06:30 CET" in header  # 05:30 UTC, in the brand's timezone
    assert "Data as of 2026-11-02 05:00 CET" in header
    assert "Returns in the month 187" in header
    assert "Read first" in header
    for note in SAMPLE_NOTES:
        assert note in header
    assert "6 settlement lines need a person" in header


def test_headline_per_currency(rendered: RenderedReport) -> None:
    rows = rows_of(section(rendered.html_email, "header"))
    # balanced, with what is unmatched on either side (invoice 50.00 + Centra 15.00 EUR)
    eur_tie = f"balanced; {eur(5_000 + 1_500)} unmatched"
    assert ["EUR", eur(123_450 + 456_789 + 15_000), eur(123_450), eur_tie, eur(14_350)] in rows
    assert [
        "SEK",
        sek(1_246_500 + 2_345_600 + 29_900),
        sek(1_246_500),
        f"balanced; {sek(12_000)} unmatched",
        sek(38_000),
    ] in rows


def test_the_reports_notes_are_shown_first_once_in_every_part() -> None:
    note = "The warehouse was last loaded at 2026-10-30 02:15, before 2026-10 ended"
    rendered = render_month_end(
        sample_report(
            data_as_of=sample_report().period_end.replace(day=30, month=10), notes=(note,)
        )
    )
    assert note in text_of(section(rendered.html_email, "header"))
    for part in (rendered.html_email, rendered.html_file, rendered.text):
        assert part.count(note) == 1
    never = render_month_end(sample_report(data_as_of=None))
    assert "Data as of never loaded" in text_of(section(never.html_email, "header"))


# --------------------------------------------------------------------------- 1. money out


def test_money_out_per_currency(rendered: RenderedReport, report: MonthEndReport) -> None:
    part = section(rendered.html_email, "money-out")
    rows = rows_of(part)
    for row in report.money_out:
        expected = [
            PAID_BY_LABELS[row.paid_by],
            str(row.count),
            format_money(row.minor, row.currency),
        ]
        assert expected in rows, expected
    assert ["Refunded (Reveni, provider succeeded, store credit)", "39", eur(595_239)] in rows
    assert ["Returns with an exchange", "5"] in rows
    assert ["Items exchanged", "7"] in rows
    assert ["Zero-value exchange orders created in Centra", "4"] in rows
    assert ["Exchanges not made (out of stock, order failed)", "1"] in rows
    assert f'src="cid:{MONEY_BY_METHOD_CID}"' in part


# --------------------------------------------------------------------------- 2. the invoice


def test_invoice_lines_by_kind_vat_disbursements_and_totals(rendered: RenderedReport) -> None:
    part = section(rendered.html_email, "invoice")
    rows = rows_of(part)
    text = text_of(part)
    assert "Source Reveni API" in text
    assert "inv_2026_10" in text
    assert [INVOICE_KIND_LABELS[InvoiceKind.PLAN], "1", eur(9_900), eur(2_079), eur(11_979)] in rows
    assert [
        INVOICE_KIND_LABELS[InvoiceKind.REVERSE_LOGISTICS_FEE],
        "20",
        sek(98_000),
        sek(20_580),
        sek(118_580),
    ] in rows
    assert [INVOICE_KIND_LABELS[InvoiceKind.PLAN], "0", sek(0), sek(0), sek(0)] in rows
    assert ["Fees", "58", eur(20_300), eur(4_263), eur(24_563)] in rows
    assert [
        INVOICE_KIND_LABELS[InvoiceKind.DISBURSEMENT],
        "6",
        eur(123_450),
        eur(0),
        eur(123_450),
    ] in rows
    assert ["Total", "64", eur(143_750), eur(4_263), eur(148_013)] in rows
    assert ["Stated on the invoice", eur(148_013)] in rows
    assert "EUR: The invoice's stated total agrees with its lines." in text
    assert "SEK: The invoice's stated total agrees with its lines." in text
    assert "still open" in text


def test_an_invoice_whose_stated_total_disagrees_says_so() -> None:
    text = text_of(section(render_month_end(unbalanced_report()).html_email, "invoice"))
    assert "SEK: The invoice's stated total does NOT agree with its lines" in text
    assert f"(difference {sek(UNBALANCED_OFF_MINOR)})" in text


def test_a_csv_invoice_states_no_total() -> None:
    base = sample_report()
    assert base.invoice is not None
    totals = tuple(dataclasses.replace(t, stated_gross_minor=None) for t in base.invoice.totals)
    invoice = dataclasses.replace(
        base.invoice, source="csv:reveni-2026-10.csv", invoice_id=None, status=None, totals=totals
    )
    rendered = render_month_end(dataclasses.replace(base, invoice=invoice))
    text = text_of(section(rendered.html_email, "invoice"))
    assert "Source CSV file reveni-2026-10.csv" in text
    assert "The invoice states no total" in text
    assert "Source: CSV file reveni-2026-10.csv" in rendered.text


def test_no_invoice_is_a_clear_line() -> None:
    rendered = render_month_end(sample_report(invoice=None))
    text = text_of(section(rendered.html_email, "invoice"))
    assert text.startswith("2. Reveni's invoice No invoice from Reveni for October 2026")
    assert "No invoice from Reveni for October 2026" in rendered.text


# --------------------------------------------------------------------------- 3. settlement


def test_tie_out_per_currency_and_its_verdict(rendered: RenderedReport) -> None:
    part = section(rendered.html_email, "settlement")
    rows = rows_of(part)
    for expected in (
        ["Disbursements on Reveni's invoice", eur(123_450)],
        ["Matched to a Centra credit", eur(100_000)],
        [
            f"Covered by Reveni (return rejected): {eur(10_000)} charged, {eur(0)} credited back",
            eur(10_000),
        ],
        ["Awaiting inspection", eur(8_450)],
        ["Unmatched or amount differs", eur(5_000)],
        ["Matched + covered + awaiting + unmatched", eur(123_450)],
        ["Difference", eur(0)],
        ["Reveni-paid credits in Centra this month", eur(106_900)],
        ["of which with no disbursement on the invoice", eur(1_500)],
        ["Disbursements on Reveni's invoice", sek(1_246_500)],
        ["Matched to a Centra credit", sek(1_200_000)],
        ["Unmatched or amount differs", sek(12_000)],
    ):
        assert expected in rows, expected
    text = text_of(part)
    # balanced, yet not settled: amber, pointing at the lines (never a green "balanced" next
    # to an unmatched line)
    assert f"EUR: Balanced to the cent, but {eur(6_500)} is unmatched" in text
    assert f"SEK: Balanced to the cent, but {sek(12_000)} is unmatched" in text
    verdict = re.search(r'<p style="([^"]*)">EUR: Balanced', part)
    assert verdict is not None and "color:#9a6700" in verdict.group(1)  # amber
    for expected in (
        ["Charged on the invoice for instant refunds (before credits back)", eur(123_450)],
        [
            "Instant refunds Reveni's returns data says it paid in the invoice's period",
            eur(123_450),
        ],
    ):
        assert expected in rows, expected
    # the tie-out comes before the lines
    assert text.index("Tie-out EUR") < text.index("Lines that need a person")


def test_an_unbalanced_tie_out_says_so_in_red() -> None:
    rendered = render_month_end(unbalanced_report())
    part = section(rendered.html_email, "settlement")
    text = text_of(part)
    assert (
        f"SEK: NOT balanced: the disbursements are {sek(UNBALANCED_OFF_MINOR)} away from their "
        "parts." in text
    )
    assert ["Difference", sek(UNBALANCED_OFF_MINOR)] in rows_of(part)
    assert "One SEK disbursement line could not be read" in text
    verdict = re.search(r'<p style="([^"]*)">SEK: NOT balanced', part)
    assert verdict is not None and "color:#cf222e" in verdict.group(1)  # red
    assert "EUR: Balanced to the cent, but" in text


def test_lines_that_need_a_person_with_both_amounts(rendered: RenderedReport) -> None:
    rows = rows_of(section(rendered.html_email, "settlement"))
    expected = [
        [
            "Invoice row 5",
            "ret_eur_005",
            "1005",
            "2026-10-06",
            eur(3_000),
            eur(2_900),
            eur(100),
            "Amount differs: Centra credited 29.00 EUR",
        ],
        [
            "Centra credit",
            "ret_eur_005",
            "1005",
            "2026-10-20",
            eur(3_000),
            eur(2_900),
            eur(100),
            "Amount differs: the invoice disburses 30.00 EUR",
        ],
        [
            "Invoice row 6",
            "ret_eur_006",
            "1006",
            "2026-10-07",
            eur(2_000),
            NONE,
            NONE,
            "Unmatched: no Centra credit for this return",
        ],
        [
            "Centra credit",
            "ret_eur_007",
            "1007",
            "2026-10-20",
            NONE,
            eur(1_500),
            NONE,
            "Unmatched: no disbursement on the invoice",
        ],
        [
            "Invoice row 83",
            "ret_sek_104",
            "2104",
            "2026-10-28",
            sek(12_000),
            sek(11_000),
            sek(1_000),
            "Amount differs: Centra credited 110.00 SEK",
        ],
    ]
    for row in expected:
        assert row in rows, row
    text = text_of(section(rendered.html_email, "settlement"))
    assert f"Lines that need a person: 6 ({eur(9_400)}, {sek(23_000)})" in text
    assert f"Covered by Reveni: 2 ({eur(10_000)}, {sek(15_000)})" in text
    covered = next(row for row in rows if row[:2] == ["Invoice row 3", "ret_eur_003"])
    assert covered[2:] == ["1003", "2026-10-04", eur(10_000), NONE, NONE, DETAIL_003]
    assert f"Matched lines: 124 ({eur(200_000)}, {sek(2_400_000)})" in text
    # in the order a person needs them
    order = [text.index(t) for t in ("need a person", "Covered by Reveni:", "Matched lines:")]
    assert order == sorted(order)


def test_line_limit_caps_each_group_in_the_email_not_in_the_file(report: MonthEndReport) -> None:
    matched = {x.reveni_return_id for x in report.settlement.lines if x.match is Match.MATCHED}

    def matched_rows(html: str) -> list[list[str]]:
        return [
            row for row in rows_of(section(html, "settlement")) if row[1:2] and row[1] in matched
        ]

    rendered = render_month_end(report, line_limit=10)
    assert len(matched_rows(rendered.html_email)) == 10
    assert "… and 114 more lines (first 10 of 124 listed)" in text_of(rendered.html_email)
    assert len(matched_rows(rendered.html_file)) == 124
    assert "more lines" not in text_of(rendered.html_file)
    tight = render_month_end(report, 2, file_line_limit=3)
    assert "… and 4 more lines (first 2 of 6 listed)" in text_of(tight.html_email)
    assert "… and 3 more lines (first 3 of 6 listed)" in text_of(tight.html_file)
    assert "... and 4 more" in tight.text
    with pytest.raises(ValueError, match="negative"):
        render_month_end(report, -1)


def test_default_limit_is_fifty_lines_a_group(rendered: RenderedReport) -> None:
    assert "… and 74 more lines (first 50 of 124 listed)" in text_of(rendered.html_email)


# --------------------------------------------------------------------------- 4. what went wrong


def test_problems_exceptions_and_money_at_risk(rendered: RenderedReport) -> None:
    part = section(rendered.html_email, "problems")
    rows = rows_of(part)
    assert [
        "Duplicate refunds (money paid twice)",
        "2",
        f"{eur(5_000)} {sek(30_000)}",
        "1 recovered",
        eur(5_000),
    ] in rows
    assert [
        "Refunds the payment provider refused",
        "3",
        f"{eur(4_950)} {sek(79_800)}",
        "0 resolved",
        NONE,
    ] in rows
    assert [
        "Refund amount mismatches (money: the difference)",
        "2",
        f"{eur(100)} {sek(1_000)}",
        "1 resolved",
        sek(1_000),
    ] in rows
    assert [
        "Settlement lines unmatched",
        "6",
        f"{eur(9_400)} {sek(23_000)}",
        "0 resolved",
        NONE,
    ] in rows
    header = next(row for row in rows if row[:2] == ["Owner", "Exception"])
    assert header[2:] == [
        "Opened",
        "Resolved",
        "Open at end",
        "0-7 days",
        "8-30 days",
        "31-90 days",
        "over 90 days",
        "Open money",
    ]
    assert [
        "Finance",
        "The payment provider refused the refund refund_failed_at_gateway",
        "3",
        "1",
        "3",
        "1",
        "1",
        "0",
        "1",
        f"{eur(4_950)} {sek(8_000)}",
    ] in rows
    ops = next(row for row in rows if row[0] == "Ops")
    assert ops[:5] == ["Ops", "Accepted in Reveni, no Centra return return_missing", "4", "4", "0"]
    total = next(row for row in rows if row[0] == "All exceptions")
    assert total[:8] == ["All exceptions", "16", "6", "11", "8", "1", "1", "1"]
    assert ["EUR", eur(14_350)] in rows
    assert ["SEK", sek(38_000)] in rows


# --------------------------------------------------------------------------- 5. trend


def test_trend_chart_and_table(rendered: RenderedReport) -> None:
    part = section(rendered.html_email, "trend")
    assert f'src="cid:{TREND_CID}"' in part
    rows = rows_of(part)
    assert rows[0] == [
        "Month",
        "Returns",
        "Approved EUR",
        "Amount EUR",
        "Approved SEK",
        "Amount SEK",
    ]
    months = [row[0] for row in rows[1:]]
    assert months == [f"2025-{m}" for m in ("11", "12")] + [f"2026-{m:02d}" for m in range(1, 11)]
    # 2025-11: EUR 30 + SEK 80 + 2 without a refund
    assert rows[1] == ["2025-11", "112", "25", eur(300_000), "70", sek(3_000_000)]


# --------------------------------------------------------------------------- the text part


def test_text_part_has_the_key_figures_and_the_tie_out(
    rendered: RenderedReport, report: MonthEndReport
) -> None:
    text = rendered.text
    assert text.startswith("RETURNS MONTH-END 2026-10 (October 2026)\n")
    for note in SAMPLE_NOTES:
        assert note in text
    for row in report.money_out:
        assert re.search(
            re.escape(PAID_BY_LABELS[row.paid_by])
            + rf" +{row.count} +"
            + re.escape(format_money(row.minor, row.currency)),
            text,
        ), row
    for line in (
        f"EUR: refunded {eur(595_239)}; disbursed by Reveni {eur(123_450)}; balanced; "
        f"{eur(6_500)} unmatched",
        f"SEK: refunded {sek(3_622_000)}; disbursed by Reveni {sek(1_246_500)}; balanced; "
        f"{sek(12_000)} unmatched",
        "6 settlement lines need a person.",
        f"=> Balanced to the cent, but {eur(6_500)} is unmatched",
        "- ret_eur_005, order 1005 (Invoice row 5): invoice 30.00 EUR, Centra 29.00 EUR; "
        "Amount differs",
        f"Money at risk: {eur(14_350)}, {sek(38_000)}",
        "Matched lines: 124",
    ):
        assert line in text, line
    for label, amount in (
        ("Disbursements on Reveni's invoice", eur(123_450)),
        ("Matched to a Centra credit", sek(1_200_000)),
        ("Total", eur(148_013)),
    ):
        assert re.search(re.escape(label) + r" +(\d+ +)?" + re.escape(amount), text), label
    assert "<" not in text.replace("<b>", "")  # plain text, no markup


def test_text_part_of_an_unbalanced_month() -> None:
    text = render_month_end(unbalanced_report()).text
    assert "SEK: refunded" in text and "NOT BALANCED" in text
    assert f"=> NOT balanced: the disbursements are {sek(1)} away from their parts." in text


# --------------------------------------------------------------------------- self-contained


@pytest.mark.parametrize("part", ["html_email", "html_file"])
def test_no_style_blocks_scripts_or_remote_resources(rendered: RenderedReport, part: str) -> None:
    html = getattr(rendered, part)
    lowered = html.lower()
    for forbidden in ("<style", "<script", "<link", "http://", "https://", "@import", "url("):
        assert forbidden not in lowered, forbidden
    assert "mailto:" not in lowered
    assert 'style="' in html  # the CSS was inlined
    assert lowered.startswith("<!doctype html>")


def test_the_email_stays_under_gmail_s_clipping_size(rendered: RenderedReport) -> None:
    """Gmail hides whatever follows the first 102 KB of a message's HTML."""
    assert len(rendered.html_email.encode()) < 102 * 1024
    assert " class=" not in rendered.html_email  # dead weight once the CSS is inlined
    assert ' class="' in rendered.html_file


def test_every_cid_has_an_image_and_every_image_a_cid(rendered: RenderedReport) -> None:
    cids = set(re.findall(r'src="cid:([^"]+)"', rendered.html_email))
    assert cids == {image.cid for image in rendered.images} == {MONEY_BY_METHOD_CID, TREND_CID}
    assert len(rendered.images) == len(cids)
    for image in rendered.images:
        assert image.filename.endswith(".png")
        assert image.alt
        alt = re.search(rf'src="cid:{re.escape(image.cid)}" alt="([^"]+)"', rendered.html_email)
        assert alt is not None and alt.group(1).startswith(image.alt[:30].replace("'", "&#39;"))


def test_the_file_embeds_the_images_and_references_no_cid(rendered: RenderedReport) -> None:
    assert "cid:" not in rendered.html_file
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', rendered.html_file)
    assert sorted(base64.b64decode(data) for data in embedded) == sorted(
        image.png for image in rendered.images
    )


def test_data_is_escaped_in_html_and_plain_in_text() -> None:
    base = sample_report()
    hostile = SettlementLine(
        Side.DISBURSEMENT,
        "<b>x</b>",
        9999,
        "EUR",
        100,
        Match.UNMATCHED,
        row=99,
        detail='<img src="x" onerror="alert(1)"> class="kept"',
    )
    report = dataclasses.replace(
        base,
        settlement=dataclasses.replace(base.settlement, lines=(*base.settlement.lines, hostile)),
        notes=("<script>alert(1)</script>",),
    )
    rendered = render_month_end(report)
    for html in (rendered.html_email, rendered.html_file):
        assert "<b>x</b>" not in html
        assert "&lt;b&gt;x&lt;/b&gt;" in html
        assert "<script" not in html and "&lt;script&gt;" in html
        assert '<img src="x"' not in html
    assert "<b>x</b>" in rendered.text  # text/plain is not HTML: no entities


def test_negative_amounts_are_visible() -> None:
    base = sample_report()
    credit = SettlementLine(
        Side.DISBURSEMENT, "ret_eur_900", 1900, "EUR", -1_000, Match.COVERED, row=98
    )
    report = dataclasses.replace(
        base,
        settlement=dataclasses.replace(base.settlement, lines=(*base.settlement.lines, credit)),
    )
    rendered = render_month_end(report)
    cell = re.search(r'<td style="([^"]*)">-10\.00 EUR</td>', rendered.html_email)
    assert cell is not None, "a negative amount keeps its minus sign"
    assert "color:#8c1d18" in cell.group(1)  # and its own colour
    assert '<td class="num neg " style="' in rendered.html_file


# --------------------------------------------------------------------------- the empty month


def test_an_empty_month_says_so_honestly() -> None:
    rendered = render_month_end(empty_report())
    text = text_of(rendered.html_email)
    assert "No returns, refunds or invoice lines in October 2026." in text
    assert "No returns, refunds or invoice lines in October 2026." in rendered.text
    assert rendered.images == ()
    assert "cid:" not in rendered.html_email and "data:image" not in rendered.html_file
    for heading in (
        "1. Money out",
        "2. Reveni's invoice",
        "3. Settlement",
        "4. What went wrong",
        "5. Trend: the last 12 months",
    ):
        assert heading in text
    assert "No refunds in October 2026." in text
    assert "No invoice from Reveni for October 2026" in text
    assert "Nothing to settle in October 2026" in text
    assert "No exceptions opened, resolved or open in October 2026." in text
    assert "No money at risk" in text
    assert "No trend yet" in text
    assert "No invoice from Reveni for 2026-10." in text  # the report's note


def test_the_sample_reports_are_what_the_tests_assume() -> None:
    assert sample_report().settlement.balanced and not unbalanced_report().settlement.balanced
    assert sample_report().currencies == ["EUR", "SEK"]
    assert empty_report().empty and not sample_report().empty


# --------------------------------------------------------------------------- the charts


def test_charts_are_pngs_of_the_stated_size_and_deterministic(report: MonthEndReport) -> None:
    for make in (money_by_method_chart, trend_chart):
        first, second = make(report), make(sample_report())
        assert first is not None and second is not None
        assert first.png.startswith(PNG_SIGNATURE)
        assert png_size(first.png) == (640, 300)
        assert first == second  # same report, same bytes
    rendered = render_month_end(report)
    assert rendered.images == render_month_end(report).images


def test_charts_change_with_the_data(report: MonthEndReport) -> None:
    other = dataclasses.replace(report, money_out=report.money_out[:3])
    first, second = money_by_method_chart(report), money_by_method_chart(other)
    assert first is not None and second is not None and first.png != second.png
    three = dataclasses.replace(
        report, trend=(*report.trend, TrendPoint("2026-10", "NOK", 5, 5, 100_000))
    )
    chart = trend_chart(three)
    assert chart is not None and png_size(chart.png) == (640, 600)  # a second row of panels
    assert "NOK: 5 returns, 5 refunds approved in Reveni, 1\u2009000.00 NOK" in chart.alt


def test_no_chart_without_data() -> None:
    empty = empty_report()
    assert money_by_method_chart(empty) is None
    assert trend_chart(empty) is None
    only_unrefunded = empty_report(trend=(TrendPoint("2026-10", "", 3, 0, 0),))
    assert trend_chart(only_unrefunded) is None
    zero = empty_report(money_out=sample_report().money_out[:0])
    assert money_by_method_chart(zero) is None


def test_chart_alt_text_describes_the_figures(report: MonthEndReport) -> None:
    money = money_by_method_chart(report)
    trend = trend_chart(report)
    assert money is not None and trend is not None
    assert money.alt.startswith("Money out in October 2026 by who paid and how.")
    assert f"{PAID_BY_LABELS[PaidBy.REVENI_INSTANT]} {eur(123_450)} (6)" in money.alt
    assert trend.alt.startswith("Returns and refunds per month from November 2025 to October 2026")


def test_money_out_is_shown_per_market_in_both_parts() -> None:
    from returnbridge.monthend.model import MarketFigures

    report = sample_report(
        by_market=(
            MarketFigures("DE", "EUR", 12, 9, 123450),
            MarketFigures("SE", "SEK", 30, 28, 2345600),
            MarketFigures("unknown", "EUR", 1, 0, 0),
        )
    )
    rendered = render_month_end(report)
    html = rendered.html_file
    assert "By market" in html
    section = html[html.index("By market") : html.index("2. Reveni")]
    for cell in ("DE", "SE", "unknown", "1\u2009234.50 EUR", "23\u2009456.00 SEK"):
        assert cell in section, cell
    text = rendered.text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("SE "))
    assert line.split()[1:3] == ["30", "28"] and line.rstrip().endswith("SEK")
    # no market table when the warehouse gave none
    assert "By market" not in render_month_end(sample_report()).html_email


def test_each_exception_code_links_to_its_runbook_entry_and_nothing_else_is_remote() -> None:
    report = sample_report()
    linked = dataclasses.replace(
        report.problems,
        exceptions=tuple(
            dataclasses.replace(t, runbook_url=f"https://wiki.example/runbook#{t.code}")
            for t in report.problems.exceptions
        ),
    )
    rendered = render_month_end(dataclasses.replace(report, problems=linked))
    for part in (rendered.html_email, rendered.html_file):
        for tally in report.problems.exceptions:
            assert f'<a href="https://wiki.example/runbook#{tally.code}"' in part
        # the runbook anchors are the only addresses: no remote image, style or font
        addresses = re.findall(r'(\w+)="(https?://[^"]*)"', part)
        assert addresses and {attribute for attribute, _ in addresses} == {"href"}
        assert "url(" not in part.lower() and "<link" not in part.lower()


def test_money_at_risk_is_itemised_largest_first_within_the_line_limit() -> None:
    from returnbridge.monthend.model import OpenItem

    report = sample_report()
    day = report.period_start.date()
    title = "Refund paid in Reveni, missing in Centra"
    missing = [
        OpenItem(n, "refund_missing", title, 1000 + n, f"ret_{n}", "EUR", 10_000 - n, day)
        for n in range(1, 8)
    ]
    mismatch = OpenItem(
        0, "refund_amount_mismatch", "Refund amounts differ", 1011, "ret_m", "SEK", 12_000, day,
        centra_minor=13_000,
    )  # fmt: skip
    items = (*missing, mismatch)
    itemised = dataclasses.replace(
        report, problems=dataclasses.replace(report.problems, open_items=items)
    )
    rendered = render_month_end(itemised, line_limit=5)
    part = section(rendered.html_email, "problems")
    assert "What makes it up: 8 open Finance items" in text_of(part)
    rows = rows_of(part)
    assert ["#1", "Refund paid in Reveni, missing in Centra refund_missing", "1001", "ret_1",
            "2026-10-01", eur(9_999), NONE] in rows  # fmt: skip
    assert "… and 3 more (first 5 listed; the saved file has them all)" in text_of(part)
    assert "ret_m" in section(rendered.html_file, "problems")  # the file lists every item
    assert f"- new refund_amount_mismatch, order 1011 (ret_m): {sek(12_000)} (Centra " \
        f"{sek(13_000)})" in render_month_end(itemised).text  # fmt: skip
