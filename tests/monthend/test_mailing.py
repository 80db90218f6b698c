"""E-mailing the month-end report over the outbox, against a real SMTP server on loopback (the
aiosmtpd stand-in) and a real ledger (SQLite file, then PostgreSQL): exactly once per month and
recipient list, a failed send kept and retried, a deliberate resend, a re-render before sending,
and concurrent deliverers sending once."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from ledger_support import ManualClock
from pydantic import SecretStr

from returnbridge.connectors.email.message import InlineImage, build_message
from returnbridge.connectors.email.smtp import SmtpSender
from returnbridge.ledger import Ledger
from returnbridge.ledger.records import MailRecord
from returnbridge.monthend.mailing import (
    MailDelivery,
    deliver,
    deliver_unsent,
    queue_mail,
    recipients_key,
)
from returnbridge.simulators.mail import MailStandIn

SENDER = "returnbridge@example.com"
RECIPIENTS = ["finance@example.com", "ops@example.com"]
KEY = recipients_key("month-end", "2026-10", RECIPIENTS)
SUBJECT = "[returnbridge] Month-end report 2026-10"
CHART = InlineImage("chart@returnbridge", "chart.png", b"\x89PNG\r\n\x1a\nchart", "Chart")


@pytest.fixture(scope="module")
def smtp() -> Iterator[MailStandIn]:
    with MailStandIn() as standin:
        yield standin


@pytest.fixture
def server(smtp: MailStandIn) -> Iterator[MailStandIn]:
    smtp.reset()
    yield smtp
    if not smtp.running:  # a test took it down
        smtp.start()


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger(ledger_url, clock=ManualClock()) as ledger:
        yield ledger


@pytest.fixture
def sender(server: MailStandIn) -> SmtpSender:
    return SmtpSender(server.settings(timeout_seconds=5))


def _builder(
    version: str = "v1", recipients: Sequence[str] = RECIPIENTS
) -> tuple[list[str], Callable[[str], EmailMessage]]:
    """A `build` for queue_mail, and the Message-IDs it was asked for."""
    asked: list[str] = []

    def build(message_id: str) -> EmailMessage:
        asked.append(message_id)
        return build_message(
            subject=SUBJECT,
            sender=SENDER,
            recipients=recipients,
            html=f'<p>Report {version}</p><img src="cid:chart@returnbridge">',
            text=f"Report {version}\n",
            images=[CHART],
            message_id=message_id,
            date=datetime(2026, 11, 1, 7, tzinfo=UTC),
        )

    return asked, build


def _queue(ledger: Ledger, version: str = "v1", *, resend: bool = False) -> MailRecord:
    _, build = _builder(version)
    return queue_mail(
        ledger,
        key=KEY,
        subject=SUBJECT,
        sender=SENDER,
        recipients=RECIPIENTS,
        build=build,
        domain="example.com",
        resend=resend,
    )


def _run(ledger: Ledger, sender: SmtpSender, *, resend: bool = False) -> MailDelivery:
    """What one flow run does: queue the report's e-mail, then deliver it."""
    return deliver(ledger, sender, _queue(ledger, resend=resend))


def _text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content()).strip()


# --------------------------------------------------------------------------- exactly once


def test_a_retried_run_does_not_e_mail_twice(
    ledger: Ledger, sender: SmtpSender, server: MailStandIn
) -> None:
    first = _run(ledger, sender)
    assert first.status == "sent" and first.ok and first.error is None
    assert first.message_id == "<month-end.2026-10.{}.0@example.com>".format(KEY.split(":")[2])
    assert first.recipients == tuple(RECIPIENTS)

    asked, build = _builder("v2")
    again = queue_mail(
        ledger,
        key=KEY,
        subject=SUBJECT,
        sender=SENDER,
        recipients=RECIPIENTS,
        build=build,
        domain="example.com",
    )
    assert again.status == "sent" and again.sent_at == first.sent_at
    assert asked == []  # nothing is even rendered again
    second = deliver(ledger, sender, again)
    assert second.status == "already_sent" and second.ok
    assert deliver_unsent(ledger, sender) == []

    [received] = server.messages
    assert received.message_id == first.message_id
    assert received.recipients == tuple(RECIPIENTS)
    assert _text(received.message) == "Report v1"
    assert [p["Content-ID"] for p in received.message.walk() if p["Content-ID"]] == [
        "<chart@returnbridge>"
    ]


def test_a_failed_send_is_kept_and_sent_by_the_next_run(
    ledger: Ledger, sender: SmtpSender, server: MailStandIn
) -> None:
    server.fail_next(1)  # 451
    failed = _run(ledger, sender)
    assert failed.status == "failed" and not failed.ok
    assert failed.error is not None and "451 4.3.0 Try again later" in failed.error
    [record] = ledger.mail_records()
    assert (record.status, record.attempts, record.last_error) == ("failed", 1, failed.error)
    assert server.messages == []

    [retried] = deliver_unsent(ledger, sender, key_prefix="month-end:")
    assert (retried.status, retried.message_id, retried.attempts) == (
        "sent",
        failed.message_id,
        2,
    )
    [received] = server.messages
    assert received.message_id == failed.message_id
    assert received.raw.replace(b"\r\n", b"\n") == record.message.replace(b"\r\n", b"\n")
    assert deliver_unsent(ledger, sender) == []


def test_a_server_that_is_down_then_back(
    ledger: Ledger, sender: SmtpSender, server: MailStandIn
) -> None:
    server.stop()
    down = _run(ledger, sender)
    assert down.status == "failed"
    assert down.error is not None
    assert f"127.0.0.1:{server.port}: connection refused" in down.error

    server.start()
    assert [d.status for d in deliver_unsent(ledger, sender)] == ["sent"]
    assert len(server.messages) == 1


def test_a_refused_login_is_a_clear_failure_not_a_traceback(ledger: Ledger) -> None:
    with MailStandIn(user="reports", password="right-password") as standin:
        wrong = SmtpSender(standin.settings(password=SecretStr("wrong-password")))
        failed = _run(ledger, wrong)
        assert failed.status == "failed"
        assert failed.error is not None and "535" in failed.error
        assert "wrong-password" not in failed.error
        [record] = ledger.mail_records()
        assert record.status == "failed" and record.last_error == failed.error

        [sent] = deliver_unsent(ledger, SmtpSender(standin.settings()))
        assert sent.status == "sent" and len(standin.messages) == 1


def test_a_resend_is_a_new_message_on_purpose(
    ledger: Ledger, sender: SmtpSender, server: MailStandIn
) -> None:
    first = _run(ledger, sender)
    resent = _run(ledger, sender, resend=True)
    assert resent.status == "sent"
    assert resent.message_id != first.message_id
    assert resent.message_id.endswith(".1@example.com>")
    assert [m.message_id for m in server.messages] == [first.message_id, resent.message_id]
    assert _run(ledger, sender).status == "already_sent"  # and a plain run after it: nothing
    assert len(server.messages) == 2
    assert [(r.sequence, r.status) for r in ledger.mail_records()] == [(0, "sent"), (1, "sent")]


def test_a_resend_before_the_first_went_out_is_still_one_message(
    ledger: Ledger, sender: SmtpSender, server: MailStandIn
) -> None:
    server.fail_next(1)
    assert _run(ledger, sender).status == "failed"
    record = _queue(ledger, resend=True)  # nothing was sent yet: this is the same message
    assert record.sequence == 0
    assert len(ledger.mail_records()) == 1


def test_a_re_render_before_sending_replaces_the_body_and_keeps_one_message(
    ledger: Ledger, sender: SmtpSender, server: MailStandIn
) -> None:
    first = _queue(ledger, "v1")
    second = _queue(ledger, "v2")
    assert (second.id, second.message_id) == (first.id, first.message_id)
    assert "Report v2" in second.body and "Report v1" not in second.body

    assert deliver(ledger, sender, second).status == "sent"
    assert deliver(ledger, sender, first).status == "already_sent"  # a stale record: nothing
    [received] = server.messages
    assert _text(received.message) == "Report v2"
    assert len(ledger.mail_records()) == 1


def test_two_threads_delivering_one_message_send_it_once(
    ledger: Ledger, sender: SmtpSender, server: MailStandIn
) -> None:
    record = _queue(ledger)
    barrier = threading.Barrier(4)
    results: list[MailDelivery] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait(timeout=30)
        delivery = deliver(ledger, sender, record)
        with lock:
            results.append(delivery)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    statuses = sorted(d.status for d in results)
    assert len(statuses) == 4 and statuses.count("sent") == 1
    assert set(statuses) <= {"sent", "busy", "already_sent"}
    assert len(server.messages) == 1
    [stored] = ledger.mail_records()
    assert (stored.status, stored.attempts) == ("sent", 1)


def test_a_half_sent_message_is_visible_and_only_the_rest_is_retried(
    ledger: Ledger, sender: SmtpSender, server: MailStandIn
) -> None:
    server.refuse("ops@example.com")
    half = _run(ledger, sender)
    assert half.status == "failed"
    assert half.error is not None
    assert "delivered to finance@example.com but refused for ops@example.com" in half.error
    assert half.recipients == ("ops@example.com",)  # still owed the message
    [record] = ledger.mail_records()
    assert (record.status, record.recipients) == ("failed", ("ops@example.com",))

    server.reset()  # the mailbox exists now
    [retried] = deliver_unsent(ledger, sender)
    assert retried.status == "sent"
    [received] = server.messages
    assert received.recipients == ("ops@example.com",)  # finance is not sent it twice
    assert received.message_id == half.message_id


def test_a_half_sent_message_queued_again_by_the_next_run_goes_only_to_the_rest(
    ledger: Ledger, sender: SmtpSender, server: MailStandIn
) -> None:
    """The next run of the report queues its message again (re-rendered) before delivering
    it: the recipient who has it is not sent it a second time."""
    server.refuse("ops@example.com")
    assert _run(ledger, sender).status == "failed"
    assert [m.recipients for m in server.messages] == [("finance@example.com",)]

    again = _run(ledger, sender)  # ops still refused: finance must not get it again
    assert again.status == "failed" and again.recipients == ("ops@example.com",)
    server.reset()
    assert _run(ledger, sender).status == "sent"
    assert [m.recipients for m in server.messages] == [("ops@example.com",)]


def test_a_superseded_message_is_never_sent(
    ledger: Ledger, sender: SmtpSender, server: MailStandIn
) -> None:
    server.stop()
    failed = _run(ledger, sender)
    assert failed.status == "failed"
    superseded = ledger.mail_supersede(failed.id, "superseded by <x@example.com>")
    assert superseded is not None and superseded.status == "superseded"
    assert ledger.mail_supersede(failed.id, "again") is None  # only pending or failed ones
    server.start()
    assert deliver_unsent(ledger, sender) == []
    assert server.messages == []


def test_an_unexpected_error_keeps_the_message_and_is_raised(
    ledger: Ledger, server: MailStandIn
) -> None:
    class Broken(SmtpSender):
        def send(self, message: bytes, *, sender: str, recipients: Sequence[str]) -> None:
            raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        _run(ledger, Broken(server.settings()))
    [record] = ledger.mail_records()
    assert (record.status, record.last_error) == ("failed", "RuntimeError: a bug")


# --------------------------------------------------------------------------- keys and builds


def test_the_key_names_the_report_the_period_and_the_recipients() -> None:
    key = recipients_key("month-end", "2026-10", ["Ops@Example.com", "finance@example.com"])
    assert re.fullmatch(r"month-end:2026-10:[0-9a-f]{8}", key)
    assert key == recipients_key("month-end", "2026-10", ["finance@example.com", "ops@example.com"])
    assert key == recipients_key(
        "month-end", "2026-10", [" ops@example.com", "FINANCE@example.com"]
    )
    assert key != recipients_key("month-end", "2026-10", ["finance@example.com"])
    assert key != recipients_key("month-end", "2026-11", ["finance@example.com", "ops@example.com"])
    with pytest.raises(ValueError, match="no recipients"):
        recipients_key("month-end", "2026-10", [" "])


def test_a_build_that_ignores_its_message_id_is_refused(ledger: Ledger) -> None:
    _, build = _builder()

    def wrong(message_id: str) -> EmailMessage:
        return build("<something-else@example.com>")

    with pytest.raises(ValueError, match=r"not the <month-end\.2026-10\."):
        queue_mail(
            ledger,
            key=KEY,
            subject=SUBJECT,
            sender=SENDER,
            recipients=RECIPIENTS,
            build=wrong,
            domain="example.com",
        )
    assert ledger.mail_records() == []


# --------------------------------------------------------------------------- the daily drain


def test_the_daily_reconciliation_sends_what_a_failed_run_kept(
    ledger: Ledger, server: MailStandIn
) -> None:
    """`tasks.month_end_steps.send_kept_mail`, which the daily reconciliation flow runs: a
    report whose run could not send it goes out the next night, once; with e-mail off it
    touches nothing."""
    from tasks.month_end_steps import send_kept_mail

    server.fail_next(1)
    failed = _run(ledger, SmtpSender(server.settings(timeout_seconds=5)))
    assert failed.status == "failed" and server.messages == []

    assert send_kept_mail.fn(ledger, server.settings().model_copy(update={"host": None})) == []
    assert [m.status for m in ledger.mail_records()] == ["failed"]

    (sent,) = send_kept_mail.fn(ledger, server.settings(timeout_seconds=5))
    assert (sent.key, sent.status) == (KEY, "sent")
    assert send_kept_mail.fn(ledger, server.settings(timeout_seconds=5)) == []
    (mail,) = server.messages
    assert mail.message_id == failed.message_id
