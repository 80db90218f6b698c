"""The ledger's `unfinished_returns` table (what a sync run leaves for the next one), and the
migration that moves schema version 1's JSON list (under a cursor) into it; each test on SQLite
(WAL file) and on a real PostgreSQL server."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from ledger_support import T0, ManualClock, version_1_ledger

from returnbridge.ledger import SCHEMA_VERSION, Ledger, UnfinishedReturn
from returnbridge.ledger import schema as ledger_schema
from returnbridge.ledger.engine import create_engine, resolve_url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(ledger_url: str, clock: ManualClock) -> Iterator[Ledger]:
    with Ledger(ledger_url, clock=clock) as ledger:
        yield ledger


def _ids(ledger: Ledger) -> list[str]:
    return [u.reveni_return_id for u in ledger.unfinished_returns()]


# --------------------------------------------------------------------------- the table


def test_unfinished_returns_round_trip(ledger: Ledger, clock: ManualClock) -> None:
    assert ledger.unfinished_returns() == []
    ledger.record_unfinished(planned=["R3", "R1", "R2"], unfinished=["R2", "R1"])
    assert ledger.unfinished_returns() == [
        UnfinishedReturn("R1", since=T0, updated_at=T0),
        UnfinishedReturn("R2", since=T0, updated_at=T0),
    ]

    later = clock.advance(minutes=1)
    # R1 not planned this run: it stays as it was; R2 planned and finished: forgotten
    ledger.record_unfinished(planned=["R2", "R4"], unfinished=["R4"])
    assert ledger.unfinished_returns() == [
        UnfinishedReturn("R1", since=T0, updated_at=T0),
        UnfinishedReturn("R4", since=later, updated_at=later),
    ]

    latest = clock.advance(minutes=1)
    ledger.record_unfinished(planned=["R1"], unfinished=["R1"])  # still unfinished: since stays
    (r1, _) = ledger.unfinished_returns()
    assert (r1.since, r1.updated_at) == (T0, latest)
    assert r1.since.tzinfo is not None and r1.updated_at.utcoffset() == timedelta(0)


def test_recording_nothing_changes_nothing(ledger: Ledger) -> None:
    ledger.record_unfinished(planned=["R1"], unfinished=["R1"])
    ledger.record_unfinished(planned=[], unfinished=[])
    ledger.record_unfinished(planned=["R9"], unfinished=[])  # forgetting what is not there
    assert _ids(ledger) == ["R1"]


def test_many_returns_at_once(ledger: Ledger) -> None:
    ids = [f"ret_{i:05d}" for i in range(1_234)]
    ledger.record_unfinished(planned=ids, unfinished=ids)
    assert _ids(ledger) == ids
    ledger.record_unfinished(planned=ids, unfinished=ids[::2])
    assert _ids(ledger) == ids[::2]


def _json_list_carry_over(stored: set[str], planned: set[str], unfinished: set[str]) -> set[str]:
    """What schema version 1's sync did with its JSON list (`_remember_unfinished`)."""
    return (stored - planned) | unfinished


def test_the_table_keeps_what_the_json_list_kept(ledger: Ledger) -> None:
    rng = random.Random(6)
    universe = [f"R{i}" for i in range(12)]
    expected: set[str] = set()
    for _ in range(40):
        planned = set(rng.sample(universe, rng.randint(0, 8)))
        unfinished = {rid for rid in planned if rng.random() < 0.5}
        expected = _json_list_carry_over(expected, planned, unfinished)
        ledger.record_unfinished(planned=planned, unfinished=unfinished)
        assert set(_ids(ledger)) == expected


# --------------------------------------------------------------------------- the migration


def _versions(ledger: Ledger) -> list[int]:
    t = ledger_schema.schema_version
    with ledger._engine.connect() as conn:
        return list(conn.execute(sa.select(t.c.version).order_by(t.c.version)).scalars())


def _has_table(url: str, name: str) -> bool:
    engine = create_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).has_table(name)
    finally:
        engine.dispose()


def test_version_1_unfinished_list_moves_into_the_table(ledger_url: str) -> None:
    written = T0 - timedelta(hours=3)
    version_1_ledger(ledger_url, '["ret_b", "ret_a", "ret_c"]', written_at=written)
    assert not _has_table(ledger_url, "unfinished_returns")

    with Ledger(ledger_url, clock=ManualClock()) as ledger:
        assert ledger.unfinished_returns() == [
            UnfinishedReturn(rid, since=written, updated_at=written)
            for rid in ("ret_a", "ret_b", "ret_c")
        ]
        assert ledger.cursor(ledger_schema.LEGACY_UNFINISHED_CURSOR) is None
        assert ledger.cursor("reveni_returns") == "2026-09-30T10:00:00+00:00"  # untouched
        assert _versions(ledger) == list(range(1, SCHEMA_VERSION + 1))

    with Ledger(ledger_url) as again:  # idempotent: opening again changes nothing
        assert _ids(again) == ["ret_a", "ret_b", "ret_c"]
        assert _versions(again) == list(range(1, SCHEMA_VERSION + 1))


def test_version_1_ledger_without_a_list_just_gets_the_table(ledger_url: str) -> None:
    version_1_ledger(ledger_url, None)
    with Ledger(ledger_url) as ledger:
        assert ledger.unfinished_returns() == []
        assert _versions(ledger) == list(range(1, SCHEMA_VERSION + 1))
        ledger.record_unfinished(planned=["R1"], unfinished=["R1"])
        assert _ids(ledger) == ["R1"]


@pytest.mark.parametrize(
    ("value", "kept", "logged"),
    [
        ("[]", [], None),
        ("", [], None),  # version 1 read an empty value as no ids
        ("not json [", [], "not a JSON list of return ids: 'not json ['"),
        ('{"ret_a": 1}', [], "not a JSON list"),
        ('"ret_a"', [], "not a JSON list"),
        ('["ret_b", 7, null, "", "ret_a", "ret_b"]', ["ret_a", "ret_b"], "dropped 3 entr"),
    ],
)
def test_a_malformed_list_is_logged_and_dropped_and_the_ledger_opens(
    ledger_url: str,
    caplog: pytest.LogCaptureFixture,
    value: str,
    kept: list[str],
    logged: str | None,
) -> None:
    version_1_ledger(ledger_url, value)
    with caplog.at_level(logging.WARNING, logger="returnbridge.ledger.schema"):
        ledger = Ledger(ledger_url)
    with ledger:
        assert _ids(ledger) == kept
        assert ledger.cursor(ledger_schema.LEGACY_UNFINISHED_CURSOR) is None  # dropped
        assert _versions(ledger) == list(range(1, SCHEMA_VERSION + 1))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if logged is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and logged in warnings[0]
        assert ledger_schema.LEGACY_UNFINISHED_CURSOR in warnings[0]


def test_a_list_a_version_1_process_writes_after_the_upgrade_is_folded_in(
    ledger_url: str, clock: ManualClock
) -> None:
    """A rolling deploy: a version-1 sync that opened the ledger before the upgrade writes its
    list again; the next opening adds those ids, leaving the rows already there as they are."""
    version_1_ledger(ledger_url, '["ret_a"]')
    with Ledger(ledger_url, clock=clock) as ledger:
        clock.advance(hours=1)
        ledger.record_unfinished(planned=["ret_a"], unfinished=["ret_a"])
        ledger.set_cursor(ledger_schema.LEGACY_UNFINISHED_CURSOR, '["ret_a", "ret_z"]')
    with Ledger(ledger_url) as reopened:
        assert reopened.unfinished_returns() == [
            UnfinishedReturn("ret_a", since=T0, updated_at=clock.now),
            UnfinishedReturn("ret_z", since=clock.now, updated_at=clock.now),
        ]
        assert reopened.cursor(ledger_schema.LEGACY_UNFINISHED_CURSOR) is None
        assert _versions(reopened) == list(range(1, SCHEMA_VERSION + 1))


def test_a_new_ledger_starts_at_the_current_version_only(ledger: Ledger) -> None:
    assert _versions(ledger) == [SCHEMA_VERSION]
