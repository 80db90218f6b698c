"""Every exception's history in the ledger (`exception_events`, schema version 5): what
returnbridge does by itself (opened, healed, reopened, still failing) and what people do (retry,
resolve, ignore, note, assign) with who did it; a closed exception refuses everything but a
note; and a version-4 ledger upgrades keeping its data, each exception given its "opened" line.
Each test on SQLite (WAL file) and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from ledger_support import T0, ManualClock

from returnbridge.core.codes import ReturnException
from returnbridge.ledger import SCHEMA_VERSION, SYSTEM_ACTOR, ExceptionClosed, Ledger
from returnbridge.ledger import schema as ledger_schema
from returnbridge.ledger.engine import WRITE_OPTION, create_engine, resolve_url
from returnbridge.ledger.queue import ConfirmationNeeded, act

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
    "refund_failed_at_gateway", "ret_2", 1002, amount=Decimal("99.00"), currency="SEK"
)
SCOPE = {"scope_return_ids": ["ret_1"], "scope_codes": ["refund_amount_mismatch"]}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(ledger_url: str, clock: ManualClock) -> Iterator[Ledger]:
    with Ledger(ledger_url, clock=clock) as ledger:
        yield ledger


def _lines(ledger: Ledger, id: int) -> list[tuple[str, str, str | None, str | None]]:
    return [(e.kind, e.actor, e.from_status, e.to_status) for e in ledger.exception_history(id)]


# --------------------------------------------------------------------------- by returnbridge


def test_what_returnbridge_does_by_itself_is_in_the_history(
    ledger: Ledger, clock: ManualClock
) -> None:
    (opened,) = ledger.observe_exceptions([MISMATCH], **SCOPE).new  # type: ignore[arg-type]
    assert opened.facts == {"centra_amount": "40.00", "centra_currency": "EUR"}
    clock.advance(hours=1)
    (healed,) = ledger.observe_exceptions([], **SCOPE).healed  # type: ignore[arg-type]
    assert healed.status == "resolved"
    clock.advance(hours=1)
    (again,) = ledger.observe_exceptions([MISMATCH], **SCOPE).new  # type: ignore[arg-type]
    assert again.id == opened.id and again.status == "open"
    clock.advance(hours=1)
    assert ledger.retry_exception(opened.id, actor="cli:alice", note="try again") == []
    clock.advance(hours=1)
    assert ledger.retried([opened.id]) == [opened.id]

    history = ledger.exception_history(opened.id)
    assert _lines(ledger, opened.id) == [
        ("opened", SYSTEM_ACTOR, None, "open"),
        ("healed", SYSTEM_ACTOR, "open", "resolved"),
        ("reopened", SYSTEM_ACTOR, "resolved", "open"),
        ("retried", "cli:alice", "open", "retrying"),
        ("still_failing", SYSTEM_ACTOR, "retrying", "open"),
    ]
    assert [e.at for e in history] == [T0 + timedelta(hours=h) for h in range(5)]
    assert history[0].note == MISMATCH.detail
    assert history[2].note is not None and history[2].note.startswith("found again")
    assert history[3].note == "try again"
    assert ledger.exception_history(opened.id + 1000) == []


def test_seen_again_while_open_adds_no_line(ledger: Ledger) -> None:
    first = ledger.raise_exception(MISMATCH)
    ledger.raise_exception(MISMATCH)
    assert [e.kind for e in ledger.exception_history(first.id)] == ["opened"]


# --------------------------------------------------------------------------- by people


def test_people_act_under_their_names(ledger: Ledger, clock: ManualClock) -> None:
    record = ledger.raise_exception(GATEWAY)
    clock.advance(minutes=5)
    taken = ledger.assign_exception(record.id, actor="cli:alice", assignee="alice")
    assert taken.assignee == "alice"
    clock.advance(minutes=5)
    given = ledger.assign_exception(record.id, actor="cli:alice", assignee="bob")
    assert given.assignee == "bob"
    clock.advance(minutes=5)
    dropped = ledger.assign_exception(record.id, actor="slack:U1 (bob)", assignee=None)
    assert dropped.assignee is None
    clock.advance(minutes=5)
    ledger.note_exception(record.id, actor="cli:alice", note="  asked the PSP  ")
    clock.advance(minutes=5)
    done = ledger.resolve_exception(record.id, note="paid by bank transfer", actor="cli:bob")
    assert (done.status, done.resolution_note) == ("resolved", "paid by bank transfer")

    history = ledger.exception_history(record.id)
    assert _lines(ledger, record.id) == [
        ("opened", SYSTEM_ACTOR, None, "open"),
        ("assigned", "cli:alice", "open", "open"),
        ("assigned", "cli:alice", "open", "open"),
        ("unassigned", "slack:U1 (bob)", "open", "open"),
        ("noted", "cli:alice", "open", "open"),
        ("resolved", "cli:bob", "open", "resolved"),
    ]
    assert [e.note for e in history[1:]] == [
        "alice",
        "bob",
        "was bob",
        "asked the PSP",
        "paid by bank transfer",
    ]


def test_ignoring_is_a_person_closing_it(ledger: Ledger) -> None:
    record = ledger.raise_exception(MISMATCH)
    ledger.resolve_exception(record.id, note="rounding", status="ignored", actor="cli:carol")
    assert _lines(ledger, record.id)[-1] == ("ignored", "cli:carol", "open", "ignored")
    # returnbridge closing one itself (the action behind it done) is "healed"
    other = ledger.raise_exception(GATEWAY)
    ledger.resolve_exception(other.id, note="the refund went through")
    assert _lines(ledger, other.id)[-1] == ("healed", SYSTEM_ACTOR, "open", "resolved")


def test_a_closed_exception_refuses_all_but_a_note(ledger: Ledger) -> None:
    record = ledger.raise_exception(GATEWAY)
    ledger.resolve_exception(record.id, note="first note", actor="cli:alice")
    before = ledger.exception_history(record.id)

    with pytest.raises(ExceptionClosed, match=r"#\d+ is already resolved on 2026-10-01"):
        ledger.resolve_exception(record.id, note="second note", actor="cli:bob")
    with pytest.raises(ExceptionClosed):
        ledger.resolve_exception(record.id, note="ignore it", status="ignored", actor="cli:bob")
    with pytest.raises(ExceptionClosed):
        ledger.retry_exception(record.id, actor="cli:bob")
    with pytest.raises(ExceptionClosed):
        ledger.assign_exception(record.id, actor="cli:bob", assignee="bob")
    with pytest.raises(ExceptionClosed):
        act(ledger, record.id, "unassign", actor="cli:bob")
    after = ledger.exception(record.id)
    assert after is not None
    assert (after.status, after.resolution_note, after.assignee) == (
        "resolved",
        "first note",
        None,
    )
    assert ledger.exception_history(record.id) == before

    noted = ledger.note_exception(record.id, actor="cli:bob", note="customer confirmed")
    assert noted.status == "resolved"
    assert _lines(ledger, record.id)[-1] == ("noted", "cli:bob", "resolved", "resolved")
    with pytest.raises(ValueError, match="a note needs some text"):
        ledger.note_exception(record.id, actor="cli:bob", note="   ")
    with pytest.raises(KeyError):
        ledger.note_exception(record.id + 1000, actor="cli:bob", note="nobody")


def test_a_money_moving_retry_needs_confirming_and_changes_nothing_until_then(
    ledger: Ledger,
) -> None:
    record = ledger.raise_exception(GATEWAY)
    with pytest.raises(ConfirmationNeeded, match=r"99\.00 SEK on order 1002"):
        act(ledger, record.id, "retry", actor="cli:alice")
    assert _lines(ledger, record.id) == [("opened", SYSTEM_ACTOR, None, "open")]
    done = act(ledger, record.id, "retry", actor="cli:alice", confirmed=True)
    assert done.record.status == "retrying"
    assert _lines(ledger, record.id)[-1] == ("retried", "cli:alice", "open", "retrying")


# --------------------------------------------------------------------------- version 4 -> 5

# The columns version 5 added to tables version 4 already had.
_VERSION_5_COLUMNS = {("exceptions", "assignee"), ("exceptions", "facts"), ("inbox", "outcome")}


def _version_4_ledger(url: str) -> None:
    """A ledger as schema version 4 left it: no `exception_events`, no version-5 columns,
    versions 1 to 4 recorded, and three exceptions: open, resolved with a note, ignored."""
    old = sa.MetaData()
    for table in ledger_schema.metadata.sorted_tables:
        if table is ledger_schema.exception_events:
            continue
        columns = [
            c._copy() for c in table.columns if (table.name, c.name) not in _VERSION_5_COLUMNS
        ]
        sa.Table(table.name, old, *columns)
    engine = create_engine(resolve_url(url))
    rows = [
        {"identity": '["refund_amount_mismatch","ret_1",1001,null]', "code":
         "refund_amount_mismatch", "owner": "finance", "reveni_return_id": "ret_1",
         "order_number": 1001, "amount": Decimal("48.00"), "currency": "EUR", "detail": "differs",
         "status": "open", "first_seen": T0, "last_seen": T0 + timedelta(hours=1), "attempts": 2},
        {"identity": '["restock_failed","ret_2",1002,"TEE-M"]', "code": "restock_failed",
         "owner": "ops", "reveni_return_id": "ret_2", "order_number": 1002, "sku": "TEE-M",
         "detail": "", "status": "resolved", "first_seen": T0 + timedelta(days=1),
         "last_seen": T0 + timedelta(days=1), "attempts": 0,
         "resolved_at": T0 + timedelta(days=2), "resolution_note": "restocked by hand"},
        {"identity": '["order_not_found","ret_3",null,null]', "code": "order_not_found",
         "owner": "cx", "reveni_return_id": "ret_3", "detail": "no such order",
         "status": "ignored", "first_seen": T0, "last_seen": T0, "attempts": 0,
         "resolved_at": T0 + timedelta(days=3), "resolution_note": "test order"},
    ]  # fmt: skip
    try:
        with engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                old.create_all(conn)
                for version in (1, 2, 3, 4):
                    conn.execute(
                        sa.insert(old.tables["schema_version"]).values(
                            version=version, applied_at=T0
                        )
                    )
                for row in rows:
                    conn.execute(sa.insert(old.tables["exceptions"]).values(row))
    finally:
        engine.dispose()


def _versions(ledger: Ledger) -> list[int]:
    t = ledger_schema.schema_version
    with ledger._engine.connect() as conn:
        return list(conn.execute(sa.select(t.c.version).order_by(t.c.version)).scalars())


def test_version_4_ledger_upgrades_keeping_its_exceptions_and_backfilling_history(
    ledger_url: str,
) -> None:
    _version_4_ledger(ledger_url)
    before = "returnbridge (before history)"
    with Ledger(ledger_url, create=False) as ledger:  # an existing ledger opens (and upgrades)
        assert _versions(ledger) == list(range(1, SCHEMA_VERSION + 1))
        by_code = {e.code: e for e in ledger.exceptions(statuses=None)}
        open_, resolved, ignored = (
            by_code[code]
            for code in ("refund_amount_mismatch", "restock_failed", "order_not_found")
        )
        assert (open_.status, open_.amount, open_.currency, open_.attempts) == (
            "open",
            Decimal("48.00"),
            "EUR",
            2,
        )
        assert (open_.first_seen, open_.last_seen) == (T0, T0 + timedelta(hours=1))
        assert (open_.assignee, open_.facts) == (None, {})
        assert (resolved.status, resolved.resolution_note, resolved.sku) == (
            "resolved",
            "restocked by hand",
            "TEE-M",
        )
        assert (ignored.status, ignored.order_number) == ("ignored", None)

        opened = ledger.exception_history(open_.id)
        assert [(e.kind, e.actor, e.at, e.to_status) for e in opened] == [
            ("opened", before, T0, "open")
        ]
        assert [
            (e.kind, e.actor, e.at, e.from_status, e.to_status, e.note)
            for e in ledger.exception_history(resolved.id)
        ] == [
            ("opened", before, T0 + timedelta(days=1), None, "open", None),
            ("resolved", before, T0 + timedelta(days=2), "open", "resolved", "restocked by hand"),
        ]
        assert [(e.kind, e.note) for e in ledger.exception_history(ignored.id)] == [
            ("opened", None),
            ("ignored", "test order"),
        ]
        # the upgraded ledger works as a new one: people act, the history goes on
        ledger.assign_exception(open_.id, actor="cli:alice", assignee="alice")
        assert ledger.exception(open_.id).assignee == "alice"  # type: ignore[union-attr]
        events = sum(len(ledger.exception_history(e.id)) for e in ledger.exceptions())
    with Ledger(ledger_url) as again:  # opening again backfills nothing twice
        assert _versions(again) == list(range(1, SCHEMA_VERSION + 1))
        assert sum(len(again.exception_history(e.id)) for e in again.exceptions()) == events
