"""What a month-end run says in its logs (the Prefect UI's run logs): one INFO line per step
through `returnbridge.monthend.runtime`'s logger (invoice, figures, settlement, report, e-mail),
numbers first, never an e-mail address."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from monthend_support import LOADED_AT, load_world, return_with_refund, write_invoice
from reconcile_builders import World

from reports.month_end import render_month_end
from returnbridge.connectors.email.settings import MailSettings
from returnbridge.monthend.run import MonthEndResult
from returnbridge.monthend.runtime import run_month_end
from returnbridge.monthend.settings import MonthEndSettings
from returnbridge.reconcile.settings import ReconcileSettings
from returnbridge.settings import Settings
from returnbridge.simulators.mail import MailStandIn
from returnbridge.sync.settings import SyncSettings

LOGGER = "returnbridge.monthend.runtime"
FINANCE = "finance@example.com"
SENDER = "returnbridge@example.com"


def steps(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The month-end's INFO and WARNING lines for October, without the prefix, in order."""
    prefix = "month-end 2026-10: "
    return [
        r.getMessage().removeprefix(prefix)
        for r in caplog.records
        if r.name == LOGGER
        and r.levelno in (logging.INFO, logging.WARNING)
        and r.getMessage().startswith(prefix)
    ]


def test_each_step_says_what_it_did_in_numbers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """October: a refund Reveni paid and Centra credited (matched), one Reveni paid and Centra
    never credited (unmatched), and a fee on the invoice."""
    w = World()
    return_with_refund(w, "r_paid", 1001, 29900, method="bank_transfer", paid_by="reveni")
    credited = w.centra_return("r_paid", 1001, [("SKU-r_paid", 1)], total=29900)
    w.credit(1001, credited, 29900, payment_method="manual", reference="rf_r_paid")
    return_with_refund(w, "r_lost", 1002, 15000, method="bank_transfer", paid_by="reveni")
    invoice = write_invoice(
        tmp_path / "invoice.csv",
        "plan,,,299.00,EUR,21,2026-10-01",
        "disbursement,r_paid,1001,299.00,SEK,,2026-10-10",
        "disbursement,r_lost,1002,150.00,SEK,,2026-10-10",
    )
    settings = Settings(
        sync=SyncSettings(ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}"),
        reconcile=ReconcileSettings(
            warehouse_path=load_world(tmp_path / "warehouse.duckdb", w), timezone="UTC"
        ),
        monthend=MonthEndSettings(
            invoice_source="off", recipients=[FINANCE], report_dir=tmp_path / "reports"
        ),
    )
    caplog.set_level(logging.INFO, logger="returnbridge")
    with MailStandIn() as smtp:
        settings.mail = smtp.settings().model_copy(update={"sender": SENDER})

        def run() -> MonthEndResult:
            return asyncio.run(
                run_month_end(
                    settings,
                    render=render_month_end,
                    month="2026-10",
                    invoice_file=invoice,
                    clock=lambda: LOADED_AT,
                )
            )

        first = run()
        lines = steps(caplog)
        caplog.clear()
        second = run()
        again = steps(caplog)
        assert len(smtp.messages) == 1

    report = first.report
    assert report.returns_in_month == 2 and len(report.settlement.lines) == 2
    assert (first.exceptions_new, first.mail) == (1, "sent")
    assert sum(row.count for row in report.money_out) == 2
    assert lines == [
        "invoice read: 3 lines (2 disbursements, 1 fees) from csv:invoice.csv",
        "2 returns, 2 refunds out (449.00 SEK); settlement 2 lines "
        "(1 matched, 1 unmatched), balanced; 0 notes",
        # saved before anything is recorded: a report that cannot be written changes nothing
        f"report saved to {first.html_path}",
        "settlement_unmatched 1 new, 0 still open, 0 healed",
        "e-mail sent to 1 recipients",
    ]
    assert second.mail == "already_sent"
    assert again[3] == "settlement_unmatched 0 new, 1 still open, 0 healed"
    assert again[-1] == f"e-mail not sent again: {second.mail_detail}"
    assert not any("@" in line for line in lines + again)  # counts, never addresses


def test_no_invoice_and_no_mail_server_are_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = World()
    return_with_refund(w, "r_paid", 1001, 29900)
    settings = Settings(
        sync=SyncSettings(ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}"),
        reconcile=ReconcileSettings(
            warehouse_path=load_world(tmp_path / "warehouse.duckdb", w), timezone="UTC"
        ),
        monthend=MonthEndSettings(
            invoice_source="off", recipients=[FINANCE], report_dir=tmp_path / "reports"
        ),
        mail=MailSettings(),
    )
    caplog.set_level(logging.INFO, logger="returnbridge")
    result = asyncio.run(
        run_month_end(settings, render=render_month_end, month="2026-10", clock=lambda: LOADED_AT)
    )
    lines = steps(caplog)
    assert result.mail == "not_sent"
    assert lines[0] == "no invoice, the settlement is not matched (1 notes)"
    assert lines[3] == "nothing to match, no settlement recorded"
    assert lines[-1] == "e-mail not sent: no SMTP server (RETURNBRIDGE_MAIL__HOST)"
    # recipients named and no server to reach them: a warning, not a routine line
    (said,) = [r for r in caplog.records if "no SMTP server" in r.getMessage()]
    assert said.levelno == logging.WARNING
