"""`returnbridge exceptions ...` on a real SQLite ledger file: the filters, table, JSON and CSV of
`list`; `show` with facts, links, local times and the whole history; the acting commands through
the queue's one door (`ledger/queue.py` `act`) under a person's name; a money-moving retry that
needs confirming; closed exceptions refused; and readers that never create a ledger."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner, Result

from returnbridge import cli_queue
from returnbridge.cli import app
from returnbridge.core.codes import ReturnException
from returnbridge.ledger import Ledger
from returnbridge.ledger.engine import LedgerMissing

ZONE = ZoneInfo("Europe/Stockholm")
NOW = datetime.now(UTC)


@dataclass
class Queue:
    """A ledger file with a few exceptions, and the environment that points the command at it."""

    path: Path
    env: dict[str, str | None]
    ids: dict[str, int]

    def run(self, *args: str, input: str | None = None, **env: str | None) -> Result:
        return CliRunner().invoke(app, list(args), env={**self.env, **env}, input=input)

    def ledger(self) -> Ledger:
        return Ledger(f"sqlite:///{self.path}", create=False)


MISMATCH = ReturnException(
    "refund_amount_mismatch",
    "ret_1",
    1001,
    amount=Decimal("48.00"),
    currency="EUR",
    detail="Reveni 48.00, Centra 40.00",
    facts=(("centra_amount", "40.00"), ("centra_currency", "EUR")),
)
GATEWAY = ReturnException(
    "refund_failed_at_gateway",
    "ret_2",
    1002,
    amount=Decimal("99.00"),
    currency="SEK",
    detail="the PSP said no",
)
DEADLINE_AT = NOW + timedelta(days=3, hours=1)
DEADLINE = ReturnException(
    "instant_deadline_near",
    "ret_3",
    1003,
    sku="TEE-BLK-M",
    detail="window ends soon",
    facts=(("deadline", DEADLINE_AT.isoformat()),),
)
OVER = ReturnException("quantity_exceeds_shipped", "ret_4", 1004, sku='TEE, "RED"')


@pytest.fixture(autouse=True)
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's clock stands at NOW, however long the test session has run."""
    monkeypatch.setattr(cli_queue, "utc_now", lambda: NOW)


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[Queue]:
    path = tmp_path / "ledger.db"
    ids: dict[str, int] = {}
    with Ledger(f"sqlite:///{path}") as ledger:
        for name, exc, age in (
            ("mismatch", MISMATCH, timedelta(days=3, hours=2)),
            ("gateway", GATEWAY, timedelta(hours=5)),
            ("deadline", DEADLINE, timedelta(minutes=20)),
            ("over", OVER, timedelta(days=1, minutes=1)),
        ):
            ids[name] = ledger.raise_exception(exc, now=NOW - age).id
    env: dict[str, str | None] = {
        "RETURNBRIDGE_SYNC__LEDGER_URL": f"sqlite:///{path}",
        "RETURNBRIDGE_RECONCILE__TIMEZONE": "Europe/Stockholm",
        "RETURNBRIDGE_LINKS__CENTRA_ORDER": "https://brand.centra.com/AMS/Order/{order_number}",
        "RETURNBRIDGE_ACTOR": None,
    }
    yield Queue(path, env, ids)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def local(moment: datetime) -> str:
    return moment.astimezone(ZONE).strftime("%Y-%m-%d %H:%M %Z")


# --------------------------------------------------------------------------- list


def test_list_table_shows_titles_ages_and_local_times(queue: Queue) -> None:
    result = ok(queue.run("exceptions", "list"))
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "id", "title", "code", "owner", "status", "order", "return", "SKU", "amount", "age",
        "assignee", "last", "seen",
    ]  # fmt: skip
    assert len(rows) == 4
    first = rows[0]  # oldest first
    assert first.startswith(f"{queue.ids['mismatch']} ")
    assert "Refund amounts differ between Reveni and Centra" in first
    assert "48.00 EUR" in first and "open 3 days" in first
    assert local(NOW - timedelta(days=3, hours=2)) in first
    assert "open 20 min" in result.stdout and "open 1 day " in result.stdout
    assert result.stderr.startswith(f"ledger: sqlite:///{queue.path}")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--owner", "Finance"], {"mismatch", "gateway"}),
        (["--owner", "CX"], {"over"}),
        (["--owner", "ops"], {"deadline"}),
        (["--code", "instant_deadline_near"], {"deadline"}),
        (["--order", "1002"], {"gateway"}),
        (["--return", "ret_1"], {"mismatch"}),
        (["--sku", "TEE-BLK-M"], {"deadline"}),
        (["--owner", "finance", "--order", "1001"], {"mismatch"}),
    ],
)
def test_list_filters(queue: Queue, args: list[str], expected: set[str]) -> None:
    rows = as_json(queue.run("exceptions", "list", "--json", *args))
    assert {r["id"] for r in rows} == {queue.ids[name] for name in expected}


def test_list_statuses_and_assignees(queue: Queue) -> None:
    ok(queue.run("exceptions", "resolve", str(queue.ids["over"]), "--note", "fixed"))
    ok(queue.run("exceptions", "assign", str(queue.ids["gateway"]), "--to", "bob"))
    ok(queue.run("exceptions", "assign", str(queue.ids["deadline"]), "--me", "--as", "alice"))

    default = as_json(queue.run("exceptions", "list", "--json"))
    assert queue.ids["over"] not in {r["id"] for r in default}
    every = as_json(queue.run("exceptions", "list", "--json", "--status", "all"))
    assert len(every) == 4
    closed = as_json(queue.run("exceptions", "list", "--json", "--status", "resolved"))
    assert [r["id"] for r in closed] == [queue.ids["over"]]
    both = queue.run("exceptions", "list", "--json", "--status", "resolved", "--status", "open")
    assert len(as_json(both)) == 4
    bobs = as_json(queue.run("exceptions", "list", "--json", "--assignee", "bob"))
    assert [(r["id"], r["assignee"]) for r in bobs] == [(queue.ids["gateway"], "bob")]
    mine = as_json(queue.run("exceptions", "list", "--json", "--mine", "--as", "alice"))
    assert [r["id"] for r in mine] == [queue.ids["deadline"]]
    via_env = queue.run("exceptions", "list", "--json", "--mine", RETURNBRIDGE_ACTOR="alice")
    assert [r["id"] for r in as_json(via_env)] == [queue.ids["deadline"]]
    nobody = queue.run("exceptions", "list", "--assignee", "zed")
    assert ok(nobody).stdout == "No exceptions.\n"


def test_list_json_keeps_utc_and_adds_title_assignee_facts_age(queue: Queue) -> None:
    rows = as_json(queue.run("exceptions", "list", "--json", "--return", "ret_1"))
    (row,) = rows
    assert row["title"] == "Refund amounts differ between Reveni and Centra"
    assert row["facts"] == {"centra_amount": "40.00", "centra_currency": "EUR"}
    assert (row["assignee"], row["age_days"], row["amount"]) == (None, 3, "48.00")
    seen = datetime.fromisoformat(row["first_seen"])
    assert seen.utcoffset() == timedelta(0)
    assert abs(seen - (NOW - timedelta(days=3, hours=2))) < timedelta(seconds=1)


def test_list_csv_has_every_field_quoted_and_local_times(queue: Queue) -> None:
    result = ok(queue.run("exceptions", "list", "--csv", "--status", "all"))
    raw = result.stdout_bytes.decode("utf-8")  # `stdout` turns CRLF into LF
    assert raw.count("\r\n") == 5  # RFC 4180 line ends: the header and 4 rows
    rows = list(csv.DictReader(io.StringIO(raw, newline="")))
    assert list(rows[0]) == list(cli_queue.CSV_COLUMNS)
    by_id = {int(r["id"]): r for r in rows}
    over = by_id[queue.ids["over"]]
    assert over["sku"] == 'TEE, "RED"'  # a comma and quotes survive the round trip
    mismatch = by_id[queue.ids["mismatch"]]
    assert json.loads(mismatch["facts"]) == {"centra_amount": "40.00", "centra_currency": "EUR"}
    first_seen = datetime.fromisoformat(mismatch["first_seen"])
    assert first_seen.utcoffset() == timedelta(0)
    assert mismatch["first_seen_local"] == local(first_seen)
    assert mismatch["age_days"] == "3" and mismatch["resolved_at"] == ""


def test_list_when_nothing_matches_says_so(queue: Queue) -> None:
    result = ok(queue.run("exceptions", "list", "--code", "duplicate_refund"))
    assert result.stdout == "No exceptions.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--owner", "marketing"], "--owner: 'marketing'"),
        (["list", "--status", "closed"], "--status: 'closed'"),
        (["list", "--mine", "--assignee", "bob"], "--assignee NAME or --mine"),
        (["list", "--json", "--csv"], "--json or --csv"),
        (["show", "999"], "no exception with id 999"),
        (["retry", "999", "--confirm"], "no exception with id 999"),
        (["note", "999", "hello"], "no exception with id 999"),
        (["assign", "1"], "exactly one of --to NAME or --me"),
        (["assign", "1", "--to", "bob", "--me"], "exactly one of --to NAME or --me"),
        (["resolve", "1", "--ignore"], "--ignore needs --note"),
        (["ignore", "1"], "Missing option '--reason'"),
        (["ignore", "1", "--reason", "  "], "ignoring needs a reason"),
        (["note", "1", " "], "a note needs some text"),
        (["resolve", "1", "--as", ""], "--as: give a name"),
    ],
)
def test_bad_input_exits_2_naming_it(queue: Queue, args: list[str], message: str) -> None:
    result = queue.run("exceptions", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert message in result.stderr


# --------------------------------------------------------------------------- show


def test_show_has_facts_links_local_times_and_history(queue: Queue) -> None:
    id = queue.ids["mismatch"]
    ok(queue.run("exceptions", "note", str(id), "asked Centra support", "--as", "alice"))
    text = ok(queue.run("exceptions", "show", str(id))).stdout
    assert text.startswith(f"#{id} Refund amounts differ between Reveni and Centra\n")
    assert "refund_amount_mismatch (finance) - open, unassigned" in text
    assert "amount: 48.00 EUR in Reveni, 40.00 EUR in Centra" in text
    assert "centra: https://brand.centra.com/AMS/Order/1001" in text
    assert "runbook: https://" in text
    assert f"first seen: {local(NOW - timedelta(days=3, hours=2))} (3 days ago)" in text
    history = text.split("  history:\n")[1].splitlines()
    assert "returnbridge  opened (new -> open): Reveni 48.00, Centra 40.00" in history[0]
    assert history[1].endswith("alice  noted: asked Centra support")

    document = as_json(queue.run("exceptions", "show", str(id), "--json"))
    assert document["links"]["centra"] == "https://brand.centra.com/AMS/Order/1001"
    assert [(e["kind"], e["actor"]) for e in document["history"]] == [
        ("opened", "returnbridge"),
        ("noted", "alice"),
    ]
    assert document["title"] and document["facts"]["centra_amount"] == "40.00"


def test_show_gives_a_deadline_as_a_local_date_and_days_left(queue: Queue) -> None:
    text = ok(queue.run("exceptions", "show", str(queue.ids["deadline"]))).stdout
    day = DEADLINE_AT.astimezone(ZONE).date()
    left = (day - NOW.astimezone(ZONE).date()).days
    assert f"deadline: {day.isoformat()} ({local(DEADLINE_AT)}), due in {left} days" in text
    assert "SKU: TEE-BLK-M" in text


# --------------------------------------------------------------------------- acting


def _history(queue: Queue, id: int) -> list[tuple[str, str]]:
    with queue.ledger() as ledger:
        return [(e.kind, e.actor) for e in ledger.exception_history(id)]


def _status(queue: Queue, id: int) -> str:
    with queue.ledger() as ledger:
        record = ledger.exception(id)
        assert record is not None
        return record.status


def test_a_money_moving_retry_needs_confirm_and_changes_nothing_without(queue: Queue) -> None:
    id = queue.ids["gateway"]
    refused = queue.run("exceptions", "retry", str(id))
    assert refused.exit_code == 2
    assert "can refund 99.00 SEK on order 1002" in refused.stderr
    assert "--confirm" in refused.stderr
    assert _status(queue, id) == "open" and _history(queue, id) == [("opened", "returnbridge")]

    done = ok(queue.run("exceptions", "retry", str(id), "--confirm", "--note", "PSP checked"))
    assert f"#{id}: marked retrying" in done.stdout
    assert _status(queue, id) == "retrying"
    assert _history(queue, id)[-1][0] == "retried"


def test_a_person_at_a_terminal_is_asked(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_queue, "_interactive", lambda: True)
    id = queue.ids["gateway"]
    declined = queue.run("exceptions", "retry", str(id), input="n\n")
    assert declined.exit_code == 2 and "Retry anyway? [y/N]" in declined.stderr
    assert _status(queue, id) == "open"
    accepted = ok(queue.run("exceptions", "retry", str(id), "--as", "alice", input="y\n"))
    assert "marked retrying" in accepted.stdout
    assert _history(queue, id)[-1] == ("retried", "alice")


def test_a_retry_that_moves_no_money_needs_no_confirm(queue: Queue) -> None:
    id = queue.ids["over"]
    ok(queue.run("exceptions", "retry", str(id)))
    assert _status(queue, id) == "retrying"


def test_closed_exceptions_are_refused_and_keep_their_note(queue: Queue) -> None:
    id = queue.ids["mismatch"]
    first = ok(queue.run("exceptions", "resolve", str(id), "--note", "credited 8.00"))
    assert f"#{id} Refund amounts differ between Reveni and Centra: resolved by" in first.stdout
    for args in (
        ["resolve", str(id), "--note", "again"],
        ["ignore", str(id), "--reason", "whatever"],
        ["resolve", str(id), "--ignore", "--note", "whatever"],
        ["retry", str(id), "--confirm"],
        ["assign", str(id), "--me"],
        ["unassign", str(id)],
    ):
        refused = queue.run("exceptions", *args)
        assert refused.exit_code == 2, args
        assert f"exception #{id} is already resolved on" in refused.stderr
    with queue.ledger() as ledger:
        record = ledger.exception(id)
        assert record is not None and record.resolution_note == "credited 8.00"
    # a note after the fact is still welcome
    ok(queue.run("exceptions", "note", str(id), "customer happy"))
    assert _history(queue, id)[-1][0] == "noted"


def test_ignore_and_its_alias(queue: Queue) -> None:
    ok(queue.run("exceptions", "ignore", str(queue.ids["over"]), "--reason", "test order"))
    alias = queue.ids["deadline"]
    ok(queue.run("exceptions", "resolve", str(alias), "--ignore", "--note", "inspected"))
    with queue.ledger() as ledger:
        over = ledger.exception(queue.ids["over"])
        deadline = ledger.exception(alias)
        assert over is not None and deadline is not None
        assert (over.status, over.resolution_note) == ("ignored", "test order")
        assert (deadline.status, deadline.resolution_note) == ("ignored", "inspected")


def test_who_acts(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    id = queue.ids["deadline"]
    monkeypatch.setattr(cli_queue.getpass, "getuser", lambda: "dora")
    ok(queue.run("exceptions", "note", str(id), "by login"))
    ok(queue.run("exceptions", "note", str(id), "by env", RETURNBRIDGE_ACTOR="ops-bot"))
    ok(queue.run("exceptions", "note", str(id), "by flag", "--as", "erik", RETURNBRIDGE_ACTOR="x"))

    def no_login() -> str:
        raise OSError("no login name")

    monkeypatch.setattr(cli_queue.getpass, "getuser", no_login)
    ok(queue.run("exceptions", "assign", str(id), "--me"))
    ok(queue.run("exceptions", "unassign", str(id), "--as", "erik"))
    assert _history(queue, id)[1:] == [
        ("noted", "cli:dora"),
        ("noted", "ops-bot"),
        ("noted", "erik"),
        ("assigned", "cli:unknown"),
        ("unassigned", "erik"),
    ]


def test_assign_and_unassign(queue: Queue) -> None:
    id = queue.ids["gateway"]
    given = ok(queue.run("exceptions", "assign", str(id), "--to", "bob", "--as", "alice"))
    assert given.stdout == f"#{id}: assigned to bob.\n"
    with queue.ledger() as ledger:
        assert ledger.exception(id).assignee == "bob"  # type: ignore[union-attr]
    dropped = ok(queue.run("exceptions", "unassign", str(id), "--as", "bob"))
    assert dropped.stdout == f"#{id}: unassigned.\n"
    with queue.ledger() as ledger:
        assert ledger.exception(id).assignee is None  # type: ignore[union-attr]
        notes = [e.note for e in ledger.exception_history(id)]
    assert notes[-2:] == ["bob", "was bob"]


# --------------------------------------------------------------------------- no ledger


@pytest.mark.parametrize(
    "args", [["exceptions", "list"], ["exceptions", "show", "1"], ["exceptions", "note", "1", "x"]]
)
def test_a_missing_ledger_is_named_and_never_created(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "nowhere" / "returnbridge.db"
    result = CliRunner().invoke(
        app, args, env={"RETURNBRIDGE_SYNC__LEDGER_URL": f"sqlite:///{missing}"}
    )
    assert result.exit_code == 2
    assert f"no ledger at {missing} (RETURNBRIDGE_SYNC__LEDGER_URL=sqlite:///{missing})" in (
        result.stderr
    )
    assert "No exceptions." not in result.stdout
    assert not missing.parent.exists()


def test_the_default_ledger_is_looked_for_relative_to_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RETURNBRIDGE_SYNC__LEDGER_URL", raising=False)
    result = CliRunner().invoke(app, ["exceptions", "list"])
    assert result.exit_code == 2
    assert f"no ledger at {tmp_path / 'data' / 'returnbridge.db'}" in result.stderr
    assert "RETURNBRIDGE_SYNC__LEDGER_URL not set" in result.stderr
    assert f"relative to the current folder {tmp_path}" in result.stderr
    assert "run from the project folder or set RETURNBRIDGE_SYNC__LEDGER_URL" in result.stderr
    assert not (tmp_path / "data").exists()


def test_opening_without_create(ledger_url: str, tmp_path: Path) -> None:
    """`Ledger(url, create=False)` on SQLite and PostgreSQL: nothing there is LedgerMissing and
    stays nothing; an existing ledger opens."""
    with pytest.raises(LedgerMissing, match="no ledger"):
        Ledger(ledger_url, create=False)
    if ledger_url.startswith("sqlite"):
        assert list(tmp_path.iterdir()) == []
    with Ledger(ledger_url) as created:
        created.raise_exception(OVER)
    with Ledger(ledger_url, create=False) as reader:
        assert [e.code for e in reader.exceptions()] == ["quantity_exceeds_shipped"]
