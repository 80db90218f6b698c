"""The month-end run (monthend/run.py, monthend/runtime.py): the settlement recorded in the
ledger and healed, an honest empty report, a bad invoice file that stops everything, and the
whole run against both simulators e-mailing a real SMTP server (the aiosmtpd stand-in) exactly
once per month and recipient list."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from monthend_support import (
    LOADED_AT,
    MID_OCTOBER,
    STOCKHOLM,
    UTC_ZONE,
    load_world,
    return_with_refund,
    write_invoice,
)
from pydantic import SecretStr
from reconcile_builders import World
from sync_support import Integration, integration

from reports.digest import render_digest
from reports.month_end import render_month_end
from returnbridge.connectors.centra.refunds import RefundTypes
from returnbridge.connectors.email.settings import MailSettings
from returnbridge.ledger import Ledger
from returnbridge.monthend.figures import Month
from returnbridge.monthend.invoice import InvoiceFileError, read_invoice_csv
from returnbridge.monthend.model import Match, MonthEndReport
from returnbridge.monthend.run import (
    MonthEndResult,
    build_report,
    open_warehouse,
    record_settlement,
)
from returnbridge.monthend.runtime import run_month_end
from returnbridge.monthend.settings import MonthEndSettings
from returnbridge.reconcile.runtime import open_reconciliation
from returnbridge.reconcile.settings import ReconcileSettings
from returnbridge.reconcile.warehouse import Warehouse
from returnbridge.scenarios import builtin_scenario
from returnbridge.settings import Settings
from returnbridge.simulators.mail import MailStandIn
from returnbridge.simulators.mail.standin import ReceivedMail
from returnbridge.sync.settings import SyncSettings

FINANCE = "finance@example.com"
SENDER = "returnbridge@example.com"
PASSWORD = "s3cret-Pa55word"

# ----------------------------------------------------------------- the settlement, hand-built


def _report(warehouse: Path, ledger: Ledger, month: Month, invoice: Path | None) -> MonthEndReport:
    doc = None if invoice is None else read_invoice_csv(invoice, period=month.text)
    with open_warehouse(warehouse, wait_seconds=1) as (wh, notes):
        return build_report(
            wh, ledger, month, invoice=doc, refund_types=RefundTypes(), notes=notes, now=LOADED_AT
        )


@pytest.mark.parametrize("zone", [UTC_ZONE, STOCKHOLM], ids=["UTC", "Europe/Stockholm"])
def test_an_unmatched_disbursement_is_raised_for_finance_and_healed_once_credited(
    tmp_path: Path, zone: ZoneInfo
) -> None:
    october = Month(2026, 10, zone)
    w = World()
    return_with_refund(
        w, "r_inst", 1001, 29900, method="bank_transfer", paid_by="reveni", instant=True
    )
    centra_return = w.centra_return("r_inst", 1001, [("SKU-r_inst", 1)], total=29900)
    warehouse = load_world(tmp_path / "warehouse.duckdb", w)
    invoice = write_invoice(
        tmp_path / "invoice.csv",
        "plan,,,299.00,EUR,21,2026-10-01",
        "disbursement,r_inst,1001,299.00,SEK,,2026-10-10",
    )
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        report = _report(warehouse, ledger, october, invoice)
        (line,) = report.settlement.lines
        assert line.match is Match.UNMATCHED and line.row == 3
        assert report.settlement.balanced  # unmatched is a bucket of its own: it ties out
        changes = record_settlement(ledger, report.settlement, now=LOADED_AT)
        assert changes is not None and [e.reveni_return_id for e in changes.new] == ["r_inst"]
        (raised,) = ledger.exceptions(code="settlement_unmatched")
        assert raised.owner == "finance" and raised.status == "open"
        assert (raised.amount, raised.currency, raised.order_number) == (
            Decimal("299.00"),
            "SEK",
            1001,
        )
        assert "never credited in Centra" in raised.detail

        # the same month made again, nothing changed: the same exception, not a second one
        again = record_settlement(ledger, _report(warehouse, ledger, october, invoice).settlement)
        assert again is not None and not again.new and len(again.seen) == 1

        # returnbridge's non-PSP credit reaches Centra; the month is made again: healed
        w.credit(
            1001,
            centra_return,
            29900,
            payment_method="manual",
            reference="rf_r_inst",
            at=MID_OCTOBER + timedelta(days=1),
        )
        load_world(warehouse, w)
        healed_report = _report(warehouse, ledger, october, invoice)
        assert [ln.match for ln in healed_report.settlement.lines] == [Match.MATCHED]
        healed = record_settlement(ledger, healed_report.settlement)
        assert healed is not None and [e.id for e in healed.healed] == [raised.id]
        assert ledger.exception(raised.id).status == "resolved"  # type: ignore[union-attr]
        assert len(ledger.exceptions(code="settlement_unmatched")) == 1


def test_the_months_settlement_exceptions_count_in_its_tallies_and_money_at_risk(
    tmp_path: Path,
) -> None:
    """The report raises settlement_unmatched after October ended (on 1 November), yet they are
    October's: in its exceptions table and money at risk the first time, once when made again,
    and open (not opened) in November's report."""
    w = World()
    return_with_refund(
        w, "r_inst", 1001, 29900, method="bank_transfer", paid_by="reveni", instant=True
    )
    warehouse = load_world(tmp_path / "warehouse.duckdb", w)
    invoice = write_invoice(tmp_path / "invoice.csv", "disbursement,r_inst,1001,299.00,SEK,,")

    def settlement_tally(report: MonthEndReport) -> tuple[int, int]:
        (tally,) = [t for t in report.problems.exceptions if t.code == "settlement_unmatched"]
        return tally.opened, tally.open_at_end

    october = Month(2026, 10, STOCKHOLM)
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        first = _report(warehouse, ledger, october, invoice)
        assert ledger.exceptions(code="settlement_unmatched") == []  # not recorded yet
        assert settlement_tally(first) == (1, 1)
        assert first.problems.money_at_risk == {"SEK": 29900}
        assert first.problems.settlement_unmatched.minor == {"SEK": 29900}  # the same money
        (item,) = first.problems.open_items  # itemised: raised by this report, not yet an id
        assert (item.exception_id, item.code, item.minor) == (0, "settlement_unmatched", 29900)
        record_settlement(ledger, first.settlement, now=LOADED_AT)
        (raised,) = ledger.exceptions(code="settlement_unmatched")
        assert raised.facts == {"period": "2026-10"}

        again = _report(warehouse, ledger, october, invoice)
        assert settlement_tally(again) == (1, 1)
        assert [i.exception_id for i in again.problems.open_items] == [raised.id]
        assert again.problems.money_at_risk == {"SEK": 29900}

        november = _report(warehouse, ledger, Month(2026, 11, STOCKHOLM), None)
        assert settlement_tally(november) == (0, 1)


def test_the_invoice_is_checked_against_the_refunds_reveni_s_own_data_says_it_paid(
    tmp_path: Path,
) -> None:
    w = World()
    return_with_refund(
        w, "r_inst", 1001, 29900, method="bank_transfer", paid_by="reveni", instant=True
    )
    warehouse = load_world(tmp_path / "warehouse.duckdb", w)
    october = Month(2026, 10, UTC_ZONE)
    agrees = write_invoice(tmp_path / "agrees.csv", "disbursement,r_inst,1001,299.00,SEK,,")
    padded = write_invoice(
        tmp_path / "padded.csv",
        "disbursement,r_inst,1001,299.00,SEK,,",
        "disbursement,r_inst,1001,50.00,SEK,,",
    )
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        (tie,) = _report(warehouse, ledger, october, agrees).settlement.tie_out
        assert (tie.charged_minor, tie.reveni_paid_minor, tie.balanced) == (29900, 29900, True)
        report = _report(warehouse, ledger, october, padded)
        (tie,) = report.settlement.tie_out
        assert (tie.charged_minor, tie.reveni_paid_minor) == (34900, 29900)
        assert not tie.balanced and not report.settlement.balanced
        assert report.totals()["currencies"]["SEK"]["reveni_paid"] == "299.00"


def test_an_invoice_in_a_strange_currency_naming_an_unknown_return_is_noted_and_raised(
    tmp_path: Path,
) -> None:
    w = World()
    return_with_refund(w, "r_known", 1001, 29900)
    warehouse = load_world(tmp_path / "warehouse.duckdb", w)
    invoice = write_invoice(tmp_path / "invoice.csv", "disbursement,r_ghost,,150.00,NOK,,")
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        report = _report(warehouse, ledger, Month(2026, 10, UTC_ZONE), invoice)
        notes = " | ".join(report.notes)
        assert "1 invoice line(s) in NOK, a currency Centra has no order in" in notes
        assert "1 disbursement line(s) name a return the warehouse does not know" in notes
        (line,) = report.settlement.lines
        assert line.match is Match.UNMATCHED and "unknown to the warehouse" in line.detail
        record_settlement(ledger, report.settlement, now=LOADED_AT)
        (raised,) = ledger.exceptions(code="settlement_unmatched")
    assert (raised.reveni_return_id, raised.currency, str(raised.amount)) == (
        "r_ghost",
        "NOK",
        "150.00",
    )
    # the report still renders, with the notes for the reader
    rendered = render_month_end(report)
    assert "a currency Centra has no order in" in rendered.text


def test_no_warehouse_yet_is_an_honest_empty_report(tmp_path: Path) -> None:
    missing = tmp_path / "never-loaded.duckdb"
    october = Month(2026, 10, STOCKHOLM)
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        report = _report(missing, ledger, october, None)
        assert record_settlement(ledger, report.settlement) is None  # nothing to match
        assert ledger.exceptions() == []
    assert not missing.exists()  # the report never creates the reconciliation's warehouse
    assert report.empty and report.data_as_of is None and report.returns_in_month == 0
    assert report.money_out == () and report.trend == () and report.invoice is None
    assert any(note.startswith(f"No warehouse at {missing} yet") for note in report.notes)
    rendered = render_month_end(report)
    # never "an empty month" in an inbox when it is the data that is missing
    assert report.incomplete == ("no warehouse data",)
    assert rendered.subject == (
        "Returns month-end 2026-10: INCOMPLETE (no warehouse data): no returns, refunds or "
        "invoice lines"
    )
    for text in (rendered.text, rendered.html_file, rendered.html_email):
        assert "the daily reconciliation has never run" in text
        assert "No returns, refunds or invoice lines in October 2026." in text


def test_data_loaded_before_the_month_ended_is_said_once(tmp_path: Path) -> None:
    w = World()
    return_with_refund(w, "r_inst", 1001, 29900, method="bank_transfer", paid_by="reveni")
    loaded_early = datetime(2026, 10, 30, 2, 15, tzinfo=UTC)
    warehouse = load_world(tmp_path / "warehouse.duckdb", w, loaded_at=loaded_early)
    empty = tmp_path / "empty.duckdb"
    Warehouse(empty).close()  # created, never loaded
    october = Month(2026, 10, STOCKHOLM)
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        early = _report(warehouse, ledger, october, None)
        never = _report(empty, ledger, october, None)
    (note,) = [n for n in early.notes if "before 2026-10 ended" in n]
    assert "2026-10-30 03:15" in note  # in the brand's timezone
    assert render_month_end(early).text.count("before 2026-10 ended") == 1
    assert [n for n in never.notes if "never been loaded" in n] != []
    assert render_month_end(never).text.count("never been loaded") == 1


def test_a_bad_invoice_file_stops_the_run_before_anything_is_written(tmp_path: Path) -> None:
    w = World()
    return_with_refund(w, "r_inst", 1001, 29900, method="bank_transfer", paid_by="reveni")
    settings = Settings(
        sync=SyncSettings(ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}"),
        reconcile=ReconcileSettings(
            warehouse_path=load_world(tmp_path / "warehouse.duckdb", w), timezone="UTC"
        ),
        monthend=MonthEndSettings(
            invoice_source="off", recipients=[FINANCE], report_dir=tmp_path / "reports"
        ),
    )
    # line 3 bills an amount finer than an öre; line 2 alone would raise settlement_unmatched
    bad = write_invoice(
        tmp_path / "invoice.csv",
        "disbursement,r_inst,1001,299.00,SEK,,2026-10-10",
        "disbursement,r_inst,1001,0.001,SEK,,2026-10-11",
    )
    with MailStandIn() as smtp:
        settings.mail = MailSettings(host=smtp.host, port=smtp.port, security="none")
        with pytest.raises(InvoiceFileError) as caught:
            asyncio.run(
                run_month_end(settings, render=render_month_end, month="2026-10", invoice_file=bad)
            )
        assert smtp.messages == []
    assert (caught.value.row, caught.value.column) == (3, "amount")
    assert "invoice.csv line 3, column amount" in str(caught.value)
    assert not (tmp_path / "reports").exists()
    with Ledger(settings.sync.ledger_url) as ledger:
        assert ledger.exceptions() == [] and ledger.mail_records() == []


def test_made_again_with_the_right_invoice_the_wrong_ones_exceptions_heal(tmp_path: Path) -> None:
    w = World()
    return_with_refund(
        w, "r_inst", 1001, 29900, method="bank_transfer", paid_by="reveni", instant=True
    )
    centra_return = w.centra_return("r_inst", 1001, [("SKU-r_inst", 1)], total=29900)
    w.credit(1001, centra_return, 29900, payment_method="manual", reference="rf_r_inst")
    warehouse = load_world(tmp_path / "warehouse.duckdb", w)
    right = write_invoice(tmp_path / "right.csv", "disbursement,r_inst,1001,299.00,SEK,,")
    wrong = write_invoice(
        tmp_path / "wrong.csv",
        "disbursement,r_inst,1001,299.00,SEK,,",
        "disbursement,r_typo,1001,45.00,SEK,,",  # a return id mistyped in the export
    )
    october = Month(2026, 10, UTC_ZONE)
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        record_settlement(ledger, _report(warehouse, ledger, october, wrong).settlement)
        (typo,) = ledger.exceptions(code="settlement_unmatched")
        assert typo.reveni_return_id == "r_typo" and typo.status == "open"
        report = _report(warehouse, ledger, october, right)
        assert not any(t.code == "settlement_unmatched" for t in report.problems.exceptions)
        changes = record_settlement(ledger, report.settlement)
        assert changes is not None and [e.id for e in changes.healed] == [typo.id]
        assert ledger.exception(typo.id).status == "resolved"  # type: ignore[union-attr]


def test_an_out_path_that_cannot_be_written_changes_nothing(tmp_path: Path) -> None:
    w = World()
    return_with_refund(
        w, "r_inst", 1001, 29900, method="bank_transfer", paid_by="reveni", instant=True
    )
    settings = Settings(
        sync=SyncSettings(ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}"),
        reconcile=ReconcileSettings(
            warehouse_path=load_world(tmp_path / "warehouse.duckdb", w), timezone="UTC"
        ),
        monthend=MonthEndSettings(invoice_source="off", report_dir=tmp_path / "reports"),
    )
    invoice = write_invoice(tmp_path / "invoice.csv", "disbursement,r_inst,1001,299.00,SEK,,")
    folder = tmp_path / "reports-folder"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="reports-folder is a directory"):
        asyncio.run(
            run_month_end(
                settings,
                render=render_month_end,
                month="2026-10",
                invoice_file=invoice,
                out=folder,
            )
        )
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []
    with Ledger(settings.sync.ledger_url) as ledger:  # the unmatched line was not recorded
        assert ledger.exceptions() == []


# ----------------------------------------------------------------- the run, both simulators


@dataclass
class ClosedMonth:
    """The basic scenario synced, reconciled, and its month (October 2026) closed: the
    simulators' clocks at 07:00 on 1 November and the month's last day in the warehouse."""

    it: Integration
    at: datetime
    tmp: Path

    def settings(self, mail: MailSettings, recipients: list[str] | None = None) -> Settings:
        return self.it.settings.model_copy(
            update={
                "mail": mail.model_copy(update={"sender": SENDER, "timeout_seconds": 5.0}),
                "monthend": MonthEndSettings(
                    recipients=[FINANCE] if recipients is None else recipients,
                    report_dir=self.tmp / "reports",
                ),
            }
        )

    def run(self, mail: MailSettings, *, ledger: Ledger | None = None, **kw: Any) -> MonthEndResult:
        return asyncio.run(
            run_month_end(
                self.settings(mail),
                render=render_month_end,
                month="2026-10",
                ledger=ledger or self.it.ledger,
                clock=lambda: self.at,
                **kw,
            )
        )


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClosedMonth]:
    tmp = tmp_path_factory.mktemp("closed-month")
    with integration(builtin_scenario("basic"), tmp) as it:
        it.walk()
        it.run()
        it.run()
        it.reconcile()
        month = Month.parse("2026-10", it.settings.reconcile.zone)
        at = month.end + timedelta(hours=7)
        for control in (it.centra, it.reveni):
            control.post("/_sim/clock", json={"set": at.isoformat()}).raise_for_status()

        async def load() -> None:
            async with open_reconciliation(
                it.settings, ledger=it.ledger, clock=lambda: at, render_digest=render_digest
            ) as rec:
                await rec.load(rec.start(None))

        asyncio.run(load())
        yield ClosedMonth(it, at, tmp)


@dataclass
class FirstSend:
    first: MonthEndResult
    second: MonthEndResult
    mails: list[ReceivedMail]
    html_file: str


@pytest.fixture(scope="module")
def first_send(closed: ClosedMonth) -> Iterator[FirstSend]:
    """The month's report run twice against the integration's own ledger (the sync's
    exceptions in it) and a local SMTP server."""
    with MailStandIn() as smtp:
        first = closed.run(smtp.settings())
        second = closed.run(smtp.settings())
        mails = smtp.messages
    assert first.html_path is not None
    yield FirstSend(first, second, mails, first.html_path.read_text(encoding="utf-8"))


def test_the_report_is_e_mailed_once_per_month_and_recipient_list(first_send: FirstSend) -> None:
    first, second = first_send.first, first_send.second
    assert (first.mail, first.recipients) == ("sent", [FINANCE])
    assert second.mail == "already_sent" and "--resend" in second.mail_detail
    assert second.message_id == first.message_id is not None
    (mail,) = first_send.mails
    assert mail.message_id == first.message_id and mail.recipients == (FINANCE,)
    summary = second.summary()
    assert summary["month"] == "2026-10" and summary["sent"] is True
    assert summary["emailed_to"] == [FINANCE] and summary["html_path"] == str(first.html_path)
    # the invoice came from the Reveni simulator's (inferred) invoices call
    assert first.report.invoice is not None and first.report.invoice.source == "reveni-api"


def test_the_e_mail_is_html_with_inline_charts_and_a_text_alternative(
    first_send: FirstSend,
) -> None:
    raw = first_send.mails[0].raw
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message.get_content_type() == "multipart/alternative"
    plain, related = message.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html, *images = related.iter_parts()
    assert html.get_content_type() == "text/html"
    assert images and {p.get_content_type() for p in images} == {"image/png"}
    cids = {str(p["Content-ID"]).strip().removeprefix("<").removesuffix(">") for p in images}
    referenced = set(re.findall(r"""cid:([^"'\s)>]+)""", html.get_content()))
    assert cids == referenced
    for image in images:
        assert image.get_content().startswith(b"\x89PNG\r\n\x1a\n")
    assert message["Subject"] == f"[returnbridge] {first_send.first.subject}"
    assert message["From"] == SENDER and message["To"] == FINANCE
    assert str(message["Message-ID"]).strip() == first_send.first.message_id
    assert parsedate_to_datetime(str(message["Date"])).tzinfo is not None
    assert "2026-10" in plain.get_content() and "MONEY OUT" in plain.get_content()
    # a machine's message (RFC 3834): out-of-office replies do not answer it
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Returnbridge-Report"] == "month-end 2026-10"


def test_no_customer_e_mail_address_reaches_the_report(first_send: FirstSend) -> None:
    scenario = builtin_scenario("basic")
    addresses = {o.customer_email for o in scenario.centra.orders}
    addresses |= {r.customer_email for r in scenario.reveni.returns if r.customer_email}
    assert len(addresses) >= 5  # the scenario does name its customers' addresses
    message = email.message_from_bytes(first_send.mails[0].raw, policy=email.policy.default)
    texts = [
        str(part.get_content()) for part in message.walk() if part.get_content_maintype() == "text"
    ]
    texts += [first_send.mails[0].raw.decode("ascii"), first_send.html_file]
    for text in texts:
        for address in addresses:
            assert address.lower() not in text.lower()
    # ... while the report does show the returns by id
    assert "ret_0002" in first_send.html_file


def test_resend_sends_a_second_e_mail_with_another_message_id(
    closed: ClosedMonth, tmp_path: Path
) -> None:
    with MailStandIn() as smtp, Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        first = closed.run(smtp.settings(), ledger=ledger)
        resent = closed.run(smtp.settings(), ledger=ledger, resend=True)
        after = closed.run(smtp.settings(), ledger=ledger)
        mails = smtp.messages
    assert (first.mail, resent.mail, after.mail) == ("sent", "sent", "already_sent")
    assert [m.message_id for m in mails] == [first.message_id, resent.message_id]
    assert first.message_id != resent.message_id
    assert after.message_id == resent.message_id


@pytest.fixture
def down_smtp() -> Iterator[tuple[MailStandIn, MailSettings]]:
    """A local SMTP server that has been started (its settings known) and is down now."""
    smtp = MailStandIn().start()
    mail = smtp.settings()
    smtp.stop()
    try:
        yield smtp, mail
    finally:
        smtp.stop()


def test_a_server_that_is_down_keeps_the_e_mail_for_the_next_run(
    closed: ClosedMonth, tmp_path: Path, down_smtp: tuple[MailStandIn, MailSettings]
) -> None:
    smtp, mail = down_smtp
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        failed = closed.run(mail, ledger=ledger)
        assert failed.mail == "failed" and not failed.sent
        assert f"{smtp.host}:{smtp.port}" in failed.mail_detail
        assert "connection refused" in failed.mail_detail
        assert failed.html_path is not None and failed.html_path.is_file()  # saved anyway
        (kept,) = ledger.mail_records()
        assert kept.status == "failed" and kept.last_error == failed.mail_detail
        assert kept.message_id == failed.message_id and kept.recipients == (FINANCE,)

        smtp.start()  # the server is back: the next run sends the kept message
        retried = closed.run(mail, ledger=ledger)
        again = closed.run(mail, ledger=ledger)
        mails = smtp.messages
        (record,) = ledger.mail_records()
    assert retried.mail == "sent" and retried.message_id == failed.message_id
    assert again.mail == "already_sent"
    assert [m.message_id for m in mails] == [failed.message_id]
    assert record.status == "sent" and record.sent_at is not None


def test_a_refused_login_fails_naming_the_login_never_the_password(
    closed: ClosedMonth, tmp_path: Path
) -> None:
    with (
        MailStandIn(user="reports", password=PASSWORD) as smtp,
        Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger,
    ):
        wrong = smtp.settings(password=SecretStr("not-" + PASSWORD))
        result = closed.run(wrong, ledger=ledger)
        (kept,) = ledger.mail_records()
        assert smtp.messages == [] and smtp.logins and not any(ok for _, ok in smtp.logins)
        right = closed.run(smtp.settings(), ledger=ledger)
        assert [m.message_id for m in smtp.messages] == [result.message_id]
    assert result.mail == "failed"
    assert "login of user 'reports' was refused" in result.mail_detail
    assert "RETURNBRIDGE_MAIL__PASSWORD" in result.mail_detail  # where to fix it
    assert kept.status == "failed" and kept.last_error == result.mail_detail
    for text in (result.mail_detail, kept.last_error or "", str(result.summary())):
        assert PASSWORD not in text
    assert right.mail == "sent"


def test_a_send_deferred_once_is_reported_as_it_ended(closed: ClosedMonth, tmp_path: Path) -> None:
    with MailStandIn() as smtp, Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        smtp.fail_next(1)  # 451: busy, try again later
        result = closed.run(smtp.settings(), ledger=ledger)
        delivered = len(smtp.messages)
        (record,) = ledger.mail_records()
    # tried once in this run, reported as it ended, kept for the next run
    assert (result.mail, delivered) == ("failed", 0)
    assert (record.status, record.attempts) == ("failed", 1)


def test_a_report_with_no_recipients_is_saved_not_sent(closed: ClosedMonth, tmp_path: Path) -> None:
    with MailStandIn() as smtp, Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        result = asyncio.run(
            run_month_end(
                closed.settings(smtp.settings(), recipients=[]),
                month="2026-10",
                render=render_month_end,
                ledger=ledger,
                clock=lambda: closed.at,
                out=tmp_path / "kept.html",
            )
        )
        assert smtp.messages == [] and ledger.mail_records() == []
    assert result.mail == "not_sent" and "RETURNBRIDGE_MONTHEND__RECIPIENTS" in result.mail_detail
    assert result.html_path == tmp_path / "kept.html" and result.html_path.is_file()
    assert result.report.generated_at == closed.at.astimezone(UTC)


def test_a_new_recipient_list_supersedes_the_kept_e_mail_to_the_old_one(
    closed: ClosedMonth, tmp_path: Path, down_smtp: tuple[MailStandIn, MailSettings]
) -> None:
    smtp, mail = down_smtp
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        kept = closed.run(mail, ledger=ledger)
        assert kept.mail == "failed"
        smtp.start()
        moved = asyncio.run(
            run_month_end(
                closed.settings(mail, recipients=["controller@example.com"]),
                render=render_month_end,
                month="2026-10",
                ledger=ledger,
                clock=lambda: closed.at,
            )
        )
        records = {r.message_id: r for r in ledger.mail_records()}
        received = smtp.messages
    assert moved.mail == "sent"
    assert [m.recipients for m in received] == [("controller@example.com",)]
    old = records[kept.message_id]
    assert old.status == "superseded" and "recipient list changed" in (old.last_error or "")


def test_already_sent_says_when_the_report_has_changed_since(
    closed: ClosedMonth, tmp_path: Path
) -> None:
    """Sent while the invoice could not be had, made again with it: the run says the report
    differs and how to send it, instead of a bare "already sent"."""
    with MailStandIn() as smtp, Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        without = closed.settings(smtp.settings())
        without.monthend = without.monthend.model_copy(update={"invoice_source": "off"})

        def run(settings: Settings) -> MonthEndResult:
            return asyncio.run(
                run_month_end(
                    settings,
                    render=render_month_end,
                    month="2026-10",
                    ledger=ledger,
                    clock=lambda: closed.at,
                )
            )

        first = run(without)
        same = run(without)
        with_invoice = run(closed.settings(smtp.settings()))
    assert first.mail == "sent" and "no invoice" in (first.subject or "")
    assert same.mail == "already_sent" and "differs" not in same.mail_detail
    assert with_invoice.mail == "already_sent"
    assert "this report differs" in with_invoice.mail_detail
    assert "--resend" in with_invoice.mail_detail


def test_without_an_invoice_the_totals_say_nothing_was_settled(tmp_path: Path) -> None:
    w = World()
    return_with_refund(w, "r_paid", 1001, 29900)
    warehouse = load_world(tmp_path / "warehouse.duckdb", w)
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        report = _report(warehouse, ledger, Month(2026, 10, UTC_ZONE), None)
    totals = report.totals()
    assert (totals["balanced"], totals["settled"]) == (None, None)  # not "balanced: true"
