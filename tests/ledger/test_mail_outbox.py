"""The ledger's e-mail outbox (`mail_*`), each test on SQLite (WAL file) and on a real
PostgreSQL server: queueing, re-rendering, claiming under a lease, sent and failed, what is
still to send, and that concurrent writers end with one row and one winner."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from functools import partial
from typing import TypeVar

import pytest
import sqlalchemy as sa
from ledger_support import T0, ManualClock

from returnbridge.ledger import SCHEMA_VERSION, TEXT_LIMIT, Ledger
from returnbridge.ledger import schema as ledger_schema
from returnbridge.ledger.engine import WRITE_OPTION, create_engine, resolve_url
from returnbridge.ledger.records import MailRecord

T = TypeVar("T")
KEY = "month-end:2026-10:3f2a9c1b"
RECIPIENTS = ("finance@example.com", "ops@example.com")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(ledger_url: str, clock: ManualClock) -> Iterator[Ledger]:
    with Ledger(ledger_url, clock=clock) as ledger:
        yield ledger


def _put(ledger: Ledger, key: str = KEY, sequence: int = 0, body: str = "body v1") -> MailRecord:
    return ledger.mail_put(
        key,
        sequence=sequence,
        message_id=f"<{key.replace(':', '.')}.{sequence}@example.com>",
        subject=f"[returnbridge] {key}",
        sender="returnbridge@example.com",
        recipients=RECIPIENTS,
        body=body,
    )


def _claimed(ledger: Ledger, record: MailRecord) -> MailRecord:
    claimed = ledger.mail_claim(record.id)
    assert claimed is not None
    return claimed


# --------------------------------------------------------------------------- queueing


def test_a_queued_message_is_pending_and_reads_back_whole(ledger: Ledger) -> None:
    record = _put(ledger)
    assert record == MailRecord(
        id=record.id,
        key=KEY,
        sequence=0,
        message_id="<month-end.2026-10.3f2a9c1b.0@example.com>",
        subject=f"[returnbridge] {KEY}",
        sender="returnbridge@example.com",
        recipients=RECIPIENTS,
        body="body v1",
        status="pending",
        attempts=0,
        last_error=None,
        created_at=T0,
        updated_at=T0,
        sent_at=None,
        lease_until=None,
    )
    assert ledger.mail_latest(KEY) == record == ledger.mail_get(record.id)
    assert record.message == b"body v1"
    assert ledger.mail_latest("month-end:2026-09:00000000") is None
    assert ledger.mail_get(record.id + 1000) is None


def test_a_big_message_is_kept_byte_for_byte(ledger: Ledger) -> None:
    body = "\r\n".join(f"line {n:06d} " + "QUJD" * 18 for n in range(20_000))  # ~1.8 MB
    record = _put(ledger, body=body)
    latest = ledger.mail_latest(KEY)
    assert latest is not None and latest.body == body and latest.id == record.id


def test_a_re_render_before_sending_replaces_the_message(
    ledger: Ledger, clock: ManualClock
) -> None:
    first = _put(ledger)
    claimed = _claimed(ledger, first)
    ledger.mail_failed(claimed.id, "451 try again later")
    clock.advance(minutes=5)

    again = ledger.mail_put(
        KEY,
        sequence=0,
        message_id=first.message_id,
        subject="[returnbridge] corrected",
        sender="returnbridge@example.com",
        recipients=["finance@example.com"],
        body="body v2",
    )
    assert again.id == first.id
    assert (again.status, again.subject, again.body) == (
        "pending",
        "[returnbridge] corrected",
        "body v2",
    )
    # the recipients stay as stored: the key names the list, and a partly delivered message
    # holds only those still owed it, whom a re-render must not widen
    assert again.recipients == first.recipients
    assert again.attempts == 1  # the history stays
    assert (again.created_at, again.updated_at) == (T0, clock.now)
    assert len(ledger.mail_records()) == 1


def test_a_sent_message_is_never_replaced(ledger: Ledger) -> None:
    first = _put(ledger)
    ledger.mail_sent(_claimed(ledger, first).id)
    again = _put(ledger, body="body v2")
    assert (again.id, again.status, again.body) == (first.id, "sent", "body v1")


def test_a_message_being_sent_is_not_replaced_until_its_lease_passes(
    ledger: Ledger, clock: ManualClock
) -> None:
    first = _put(ledger)
    _claimed(ledger, first)
    held = _put(ledger, body="body v2")
    assert (held.status, held.body) == ("sending", "body v1")

    clock.advance(seconds=301)  # the sender crashed
    again = _put(ledger, body="body v2")
    assert (again.status, again.body, again.lease_until) == ("pending", "body v2", None)


def test_the_latest_message_is_the_highest_sequence(ledger: Ledger, clock: ManualClock) -> None:
    _put(ledger, sequence=0)
    clock.advance(minutes=1)
    resend = _put(ledger, sequence=1)
    _put(ledger, key="month-end:2026-10:aaaaaaaa", sequence=5)
    assert ledger.mail_latest(KEY) == resend
    assert resend.message_id != _put(ledger, sequence=0).message_id


def test_a_message_id_belongs_to_one_message(ledger: Ledger) -> None:
    _put(ledger)
    with pytest.raises(ValueError, match="already used by another message"):
        ledger.mail_put(
            "month-end:2026-11:3f2a9c1b",
            sequence=0,
            message_id="<month-end.2026-10.3f2a9c1b.0@example.com>",
            subject="s",
            sender="returnbridge@example.com",
            recipients=RECIPIENTS,
            body="b",
        )


@pytest.mark.parametrize(
    ("sequence", "recipients", "match"), [(-1, RECIPIENTS, "sequence"), (0, (), "no recipients")]
)
def test_a_message_needs_a_sequence_and_recipients(
    ledger: Ledger, sequence: int, recipients: tuple[str, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        ledger.mail_put(
            KEY,
            sequence=sequence,
            message_id="<x@example.com>",
            subject="s",
            sender="returnbridge@example.com",
            recipients=recipients,
            body="b",
        )


# --------------------------------------------------------------------------- claiming and after


def test_a_claim_holds_the_message_for_its_lease(ledger: Ledger, clock: ManualClock) -> None:
    record = _put(ledger)
    claimed = ledger.mail_claim(record.id, lease_seconds=60)
    assert claimed is not None
    assert (claimed.status, claimed.attempts) == ("sending", 1)
    assert claimed.lease_until == T0 + timedelta(seconds=60)
    assert ledger.mail_claim(record.id) is None  # held

    clock.advance(seconds=61)  # its sender is gone
    again = ledger.mail_claim(record.id)
    assert again is not None and again.attempts == 2
    assert ledger.mail_claim(record.id + 1000) is None


def test_sent_is_final(ledger: Ledger, clock: ManualClock) -> None:
    record = _put(ledger)
    claimed = _claimed(ledger, record)
    clock.advance(seconds=2)
    sent = ledger.mail_sent(claimed.id)
    assert (sent.status, sent.sent_at, sent.lease_until) == ("sent", clock.now, None)
    assert ledger.mail_claim(record.id) is None

    clock.advance(seconds=2)
    assert ledger.mail_sent(record.id).sent_at == sent.sent_at  # the first acceptance stays
    assert ledger.mail_failed(record.id, "late error").status == "sent"
    assert ledger.mail_unsent() == []
    with pytest.raises(KeyError, match="no outbox message with id"):
        ledger.mail_sent(record.id + 1000)
    with pytest.raises(KeyError, match="no outbox message with id"):
        ledger.mail_failed(record.id + 1000, "x")


def test_a_failure_keeps_the_message_and_its_error(ledger: Ledger) -> None:
    record = _put(ledger)
    failed = ledger.mail_failed(_claimed(ledger, record).id, "E" * (TEXT_LIMIT + 500))
    assert (failed.status, failed.lease_until, failed.attempts) == ("failed", None, 1)
    assert failed.last_error is not None and len(failed.last_error) == TEXT_LIMIT
    assert failed.last_error.endswith("more characters cut]")
    assert failed.body == record.body
    again = ledger.mail_claim(record.id)  # a failed message is claimed again
    assert again is not None and again.attempts == 2


def test_a_failure_can_narrow_who_is_still_owed_the_message(ledger: Ledger) -> None:
    record = _put(ledger)
    failed = ledger.mail_failed(
        _claimed(ledger, record).id, "550 no such user", recipients=["ops@example.com"]
    )
    assert failed.recipients == ("ops@example.com",)
    with pytest.raises(ValueError, match="no recipients"):
        ledger.mail_failed(record.id, "x", recipients=[])


def test_unsent_messages_oldest_first(ledger: Ledger, clock: ManualClock) -> None:
    pending = _put(ledger, key="month-end:2026-08:aaaaaaaa")
    clock.advance(minutes=1)
    failed = _put(ledger, key="month-end:2026-09:aaaaaaaa")
    ledger.mail_failed(_claimed(ledger, failed).id, "451")
    clock.advance(minutes=1)
    sending = _put(ledger, key="month-end:2026-10:aaaaaaaa")
    _claimed(ledger, sending)
    clock.advance(minutes=1)
    sent = _put(ledger, key="month-end:2026-11:aaaaaaaa")
    ledger.mail_sent(_claimed(ledger, sent).id)
    clock.advance(minutes=1)
    other = _put(ledger, key="weekly:2026-44:aaaaaaaa")

    assert [r.id for r in ledger.mail_unsent()] == [pending.id, failed.id, other.id]
    assert [r.id for r in ledger.mail_unsent(limit=1)] == [pending.id]
    assert [r.id for r in ledger.mail_unsent(key_prefix="month-end:")] == [pending.id, failed.id]
    clock.advance(seconds=300)  # the lease of `sending` has passed
    assert [r.id for r in ledger.mail_unsent(key_prefix="month-end:")] == [
        pending.id,
        failed.id,
        sending.id,
    ]
    assert [r.id for r in ledger.mail_records(key_prefix="month-end:2026-1")] == [
        sending.id,
        sent.id,
    ]
    assert len(ledger.mail_records()) == 5


def test_a_key_prefix_is_literal(ledger: Ledger) -> None:
    _put(ledger, key="month_end:2026-10:aaaaaaaa")
    _put(ledger, key="monthXend:2026-10:aaaaaaaa")
    _put(ledger, key="month%:2026-10:aaaaaaaa")
    assert [r.key for r in ledger.mail_unsent(key_prefix="month_")] == [
        "month_end:2026-10:aaaaaaaa"
    ]
    assert [r.key for r in ledger.mail_records(key_prefix="month%")] == ["month%:2026-10:aaaaaaaa"]


# --------------------------------------------------------------------------- concurrency


def _all_at_once(work: Sequence[Callable[[], T]]) -> list[T]:
    """Run every callable in its own thread, released together; their results in order."""
    barrier = threading.Barrier(len(work))
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[n] = work[n]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(results) == len(work)
    return [results[n] for n in range(len(work))]


def test_writers_queueing_one_message_at_once_end_with_one_row(
    ledger_url: str, clock: ManualClock
) -> None:
    ledgers = [Ledger(ledger_url, clock=clock) for _ in range(3)]  # as if three processes
    try:
        work = [partial(_put, ledgers[n % 3], body=f"render {n}") for n in range(9)]
        records = _all_at_once(work)
        assert len({r.id for r in records}) == 1
        [row] = ledgers[0].mail_records()
        assert row.status == "pending" and row.body.startswith("render ")
    finally:
        for ledger in ledgers:
            ledger.close()


def test_senders_claiming_one_message_at_once_have_one_winner(
    ledger_url: str, clock: ManualClock
) -> None:
    ledgers = [Ledger(ledger_url, clock=clock) for _ in range(3)]
    try:
        record = _put(ledgers[0])
        claims = _all_at_once([partial(ledger.mail_claim, record.id) for ledger in ledgers * 3])
        assert len([claim for claim in claims if claim is not None]) == 1
        current = ledgers[1].mail_get(record.id)
        assert current is not None and (current.status, current.attempts) == ("sending", 1)
    finally:
        for ledger in ledgers:
            ledger.close()


# --------------------------------------------------------------------------- the migration


def _version_2_ledger(url: str) -> None:
    """A ledger as schema version 2 left it: every table but `mail_outbox`, version 2 recorded."""
    engine = create_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                tables = [
                    t
                    for t in ledger_schema.metadata.sorted_tables
                    if t is not ledger_schema.mail_outbox
                ]
                ledger_schema.metadata.create_all(conn, tables=tables)
                conn.execute(
                    sa.insert(ledger_schema.schema_version).values(version=2, applied_at=T0)
                )
    finally:
        engine.dispose()


def test_a_version_2_ledger_gets_the_outbox(ledger_url: str) -> None:
    _version_2_ledger(ledger_url)
    with Ledger(ledger_url, clock=ManualClock()) as ledger:
        t = ledger_schema.schema_version
        with ledger._engine.connect() as conn:
            versions = list(conn.execute(sa.select(t.c.version).order_by(t.c.version)).scalars())
            indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("mail_outbox")}
        assert versions == list(range(2, SCHEMA_VERSION + 1))
        assert {"ux_mail_outbox_key_sequence", "ux_mail_outbox_message_id"} <= indexes
        assert _put(ledger).status == "pending"
