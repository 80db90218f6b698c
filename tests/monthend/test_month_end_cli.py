"""`returnbridge report month-end` as an operator runs it: settings from RETURNBRIDGE_*
variables pointing at a prepared ledger and warehouse, exit 2 naming the bad input, one JSON
document with --json, never a traceback."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from monthend_support import ClosedOctober, closed_october, month_end_env, write_invoice
from typer.testing import CliRunner, Result

from returnbridge.cli import app
from returnbridge.ledger import Ledger
from returnbridge.simulators.mail import MailStandIn


@pytest.fixture
def october(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClosedOctober]:
    """October's warehouse in tmp_path, and an environment that names only it (no stray
    RETURNBRIDGE_* variable, no .env of the project: the command runs in tmp_path)."""
    for name in list(os.environ):
        if name.startswith("RETURNBRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    prepared = closed_october(tmp_path)
    yield prepared


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def month_end(*args: str) -> Result:
    return CliRunner().invoke(app, ["report", "month-end", *args])


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def nothing_written(folder: Path) -> bool:
    if (folder / "reports").exists() and any((folder / "reports").iterdir()):
        return False
    if not (folder / "ledger.db").exists():
        return True
    with Ledger(f"sqlite:///{folder / 'ledger.db'}") as ledger:
        return ledger.exceptions() == [] and ledger.mail_records() == []


@pytest.mark.parametrize(
    ("month", "problem"),
    [
        ("2026-13", "has no month 13"),
        ("2026/10", "expected YYYY-MM"),
        ("october", "expected YYYY-MM"),
        ("0000-05", "has no year 0"),
    ],
)
def test_a_month_that_is_not_a_month_exits_2_naming_month(
    october: ClosedOctober,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    month: str,
    problem: str,
) -> None:
    use(monkeypatch, month_end_env(tmp_path, october.warehouse))
    result = month_end("--month", month, "--no-send")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("returnbridge: --month: ")
    assert problem in result.stderr and repr(month) in result.stderr
    assert_no_traceback(result)
    assert nothing_written(tmp_path)


def test_a_month_that_has_not_started_yet_exits_2(
    october: ClosedOctober, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, month_end_env(tmp_path, october.warehouse, timezone=None))
    future = f"{datetime.now(UTC).year + 1}-01"
    result = month_end("--month", future, "--no-send")
    assert result.exit_code == 2, result.output
    assert f"--month: {future} has not started yet in Europe/Stockholm" in result.stderr
    assert_no_traceback(result)
    assert nothing_written(tmp_path)


def test_a_bad_invoice_file_exits_2_naming_its_line_and_column(
    october: ClosedOctober, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, month_end_env(tmp_path, october.warehouse))
    bad = write_invoice(
        tmp_path / "bad.csv",
        "disbursement,r_ghost,1003,149.00,SEK,,2026-10-10",
        "disbursement,r_inst,1001,299.00,sek,,2026-10-10",
    )
    result = month_end("--month", "2026-10", "--invoice", str(bad), "--no-send")
    assert result.exit_code == 2, result.output
    assert "returnbridge: --invoice: bad.csv line 3, column currency: 'sek'" in result.stderr
    assert_no_traceback(result)
    # line 2 alone would have raised settlement_unmatched: the file stopped everything
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("timezone", ["UTC", None], ids=["UTC", "default-Europe/Stockholm"])
def test_no_send_json_prints_one_document_with_the_months_figures(
    october: ClosedOctober,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    timezone: str | None,
) -> None:
    use(monkeypatch, month_end_env(tmp_path, october.warehouse, timezone=timezone))
    out = tmp_path / "kept" / "october.html"
    result = month_end(
        "--month", "2026-10", "--invoice", str(october.invoice), "--out", str(out),
        "--no-send", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # the whole of stdout is one document
    assert summary["month"] == "2026-10"
    assert summary["html_path"] == str(out) and out.is_file()
    assert "<html" in out.read_text(encoding="utf-8")
    assert (summary["mail"], summary["sent"], summary["emailed_to"]) == ("not_sent", False, [])
    assert summary["settlement_unmatched"] == {"new": 1, "still_open": 0, "healed": 0}
    totals = summary["totals"]
    assert totals["returns"] == 3 and totals["settlement_unmatched"] == 1
    sek = totals["currencies"]["SEK"]
    assert sek["money_out"] == {"reveni_instant": "448.00", "psp_succeeded": "500.00"}
    assert (sek["disbursements"], sek["matched"], sek["unmatched"]) == (
        "448.00",
        "299.00",
        "149.00",
    )
    assert totals["currencies"]["EUR"]["invoice_fees_net"] == "299.00"
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        (raised,) = ledger.exceptions(code="settlement_unmatched")
        assert ledger.mail_records() == []
    assert (raised.reveni_return_id, raised.owner) == ("r_ghost", "finance")


def test_an_smtp_server_that_is_down_exits_1_and_keeps_the_e_mail(
    october: ClosedOctober, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp = MailStandIn().start()
    port = smtp.port
    smtp.stop()
    env = month_end_env(
        tmp_path, october.warehouse, mail_port=port, recipients="finance@example.com"
    )
    use(monkeypatch, env)
    result = month_end("--month", "2026-10", "--invoice", str(october.invoice))
    assert result.exit_code == 1, result.output
    assert f"e-mail: failed (e-mail via 127.0.0.1:{port}: connection refused" in result.stdout
    assert_no_traceback(result)
    assert (tmp_path / "reports" / "month-end-2026-10.html").is_file()
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        (kept,) = ledger.mail_records()
    assert kept.status == "failed" and kept.recipients == ("finance@example.com",)
