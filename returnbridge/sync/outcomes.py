"""The outcome state machine: what happens to one claimed action, and what each answer means
(docs/architecture.md#the-executor, docs/architecture.md#action-states).

A claimed action is sent (`calls.py`) or, when its outcome is unknown, read back (`readback.py`);
the result moves it out of `in_flight`:

- success: `done`, with Centra's id of the effect (the exceptions its earlier failures raised
  are healed);
- nothing changed (`TransientError`, `RateLimitedError`): back to `pending` after a backoff (or
  Centra's `Retry-After`), `failed` plus the kind's exception after `max_attempts`;
- Centra said no (`RejectedError`): `failed` plus the kind's exception, except where the refusal
  means "it already happened" (`POST /order` -5, a return already refunded), which is read back;
- a credentials or query error (`AuthError`, `QueryError`): `failed`, named as such (a person
  must fix configuration or code; retrying cannot help);
- refused locally before sending (`ValueError`, an unreadable stored payload): `blocked`;
- an unknown outcome (`InDoubtError`, a crashed worker's expired lease, anything unexpected after
  the call began): `in_doubt`, then read back at once, never resent blindly. Proven: `done`.
  Proven absent: `pending` (safe to send). Inconclusive: stays `in_doubt` with a backoff, and an
  `action_in_doubt` exception (ops) after `read_back_attempts`, while later runs keep reading.

A read-back that finds nothing right after the uncertain call is not yet proof: Centra may still
be executing a request our side gave up on. `in_doubt_settle_seconds` after the uncertain call,
"absent" is believed.

A refund an asynchronous PSP has not answered yet (a pending refund request, in the answer or
in a read-back) is neither done nor absent: the action waits `in_doubt` with `PSP_PENDING` as its
last error, is read back again every `psp_recheck_seconds`, and ends `done` when the PSP
settles it or `failed` (`refund_failed_at_gateway`) when the PSP refuses it. It is never sent
again while it waits: a read-back that then finds nothing is inconclusive, not "absent"
(docs/architecture.md#refunds-at-the-psp).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import datetime, timedelta
from typing import Final

from returnbridge.clock import Clock
from returnbridge.connectors.centra.client import CentraClient
from returnbridge.connectors.centra.models import lenient_decimal
from returnbridge.connectors.errors import (
    AuthError,
    InDoubtError,
    QueryError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from returnbridge.core.actions import Action, ActionStateError
from returnbridge.core.codes import FAILURE_CODE, HEALED_ON_DONE, ReturnException
from returnbridge.ledger import ActionRecord, ExceptionClosed, Ledger
from returnbridge.sync import calls
from returnbridge.sync.calls import ORDER_DUPLICATE_NUMBER, ORDER_NO_STOCK, CannotSend
from returnbridge.sync.readback import Absent, Found, InProgress, ReadBack, Refused, read_back
from returnbridge.sync.report import ExecutorConfig
from returnbridge.sync.session import LostClaim, Session

log = logging.getLogger(__name__)

# Request summary of a read-back attempt (how inconclusive read-backs in a row are counted).
READ_BACK: Final = "read back"
# Before the request summary of an attempt Centra refused for our credentials: not a send of
# the action (it never counts towards `max_attempts`), and the error of the action left pending.
CREDENTIALS_REFUSED: Final = "credentials refused"
# last_error of an action read back too soon after its uncertain call: its next read-back,
# due at the end of the settle time, believes "absent".
TOO_SOON: Final = "read back too soon"
# last_error of a refund waiting for an asynchronous PSP's answer.
PSP_PENDING: Final = "refund pending at the PSP"
# In last_error: Centra accepted the write, yet a read-back did not find it (never resent).
ACCEPTED_UNSEEN: Final = "accepted by Centra, yet not found"
_LIVE: Final = ("open", "retrying")


def credentials_setting(kind: str) -> str:
    """The setting holding the credentials an action of `kind` is sent with: the REST Order
    API's secret for refunds and exchange orders, the GraphQL token for the rest."""
    if kind in ("refund", "exchange_order"):
        return "RETURNBRIDGE_CENTRA__ORDER_API_SECRET (the REST Order API secret)"
    return "RETURNBRIDGE_CENTRA__TOKEN (the GraphQL Integration API token)"


class Outcomes:
    """Settles claimed actions in the ledger by what sending or reading them back showed.

    Every method takes the run's `Session` (its report, backoffs, parked keys and budget) and
    works on an action this run holds the claim of (`in_flight`); a claim lost meanwhile (a
    lease taken over) leaves the action to its new holder.
    """

    def __init__(
        self,
        centra: CentraClient,
        ledger: Ledger,
        config: ExecutorConfig,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.centra = centra
        self.ledger = ledger
        self.config = config
        self.clock = clock
        self._rng = rng

    async def handle(self, session: Session, claimed: ActionRecord, before: ActionRecord) -> None:
        """Work one claimed action: read it back if its outcome is unknown, else send it.
        `before`: the record as it was when claimed (its state and last error)."""
        try:
            action = claimed.action()
        except (KeyError, TypeError, ValueError) as exc:
            code = FAILURE_CODE.get(claimed.kind, "action_in_doubt")
            detail = f"its stored payload cannot be read: {exc}"
            self.finish(session, claimed, "blocked", code, detail, self.clock.now(), "(not sent)")
            return
        last_error = before.last_error or ""
        if before.state == "in_doubt" and (
            last_error.startswith(PSP_PENDING) or ACCEPTED_UNSEEN in last_error
        ):
            await self.settle(session, action, claimed, believe_absent_after=None, waiting=True)
        elif before.state == "in_doubt":
            if (before.last_error or "").startswith(TOO_SOON):
                believe_after = None  # the settle time it waited for has passed
            else:  # a crashed worker (lease expired) or an inconclusive read-back
                believe_after = before.updated_at + self.settle_time
            await self.settle(session, action, claimed, believe_absent_after=believe_after)
        else:
            await self.send(session, action, claimed)

    # ------------------------------------------------------------------ sending

    async def send(self, session: Session, action: Action, rec: ActionRecord) -> None:
        """Send `action` once and settle it by the answer (or the error)."""
        started = self.clock.now()
        summary = calls.request_summary(action)
        try:
            found = await calls.send(self.centra, action, session.channel(rec.key), session.origins)
        except LostClaim:
            log.warning("action %s: claim lost before sending; left to its new holder", rec.key)
        except InDoubtError as exc:
            await self.in_doubt(session, action, rec, started, summary, str(exc))
        except RateLimitedError as exc:
            self.retry(session, rec, started, summary, f"rate limited: {exc}", exc.retry_after)
        except TransientError as exc:
            self.retry(session, rec, started, summary, f"{type(exc).__name__}: {exc}", None)
        except RejectedError as exc:
            await self.rejected(session, action, rec, started, summary, exc)
        except AuthError as exc:
            self.credentials_refused(session, rec, started, summary, exc)
        except QueryError as exc:
            detail = (
                f"{type(exc).__name__} (query error: fix the configuration or the code; not "
                f"retried): {exc}"
            )
            code = FAILURE_CODE[action.kind]
            self.finish(session, rec, "failed", code, detail, started, summary)
        except CannotSend as exc:
            self.finish(session, rec, "failed", exc.code, str(exc), started, summary)
        except ValueError as exc:  # refused locally before sending: a planning or config bug
            detail = f"not sent: {exc}"
            code = FAILURE_CODE[action.kind]
            self.finish(session, rec, "blocked", code, detail, started, summary)
        except Exception as exc:
            # Something unexpected after the call began: it may have reached Centra.
            log.exception("action %s: unexpected error; reading back before any resend", rec.key)
            error = f"{type(exc).__name__}: {exc}"
            await self.in_doubt(session, action, rec, started, summary, error)
        else:
            if found is None:  # Centra said yes without saying what it did: look
                response = "accepted; the answer does not say what was done"
                self.attempt(rec.key, started, summary, response, None, "in_flight")
                await self.settle(session, action, rec, believe_absent_after=None, waiting=True)
            elif isinstance(found, Refused):
                self.finish(session, rec, "failed", found.code, found.summary, started, summary)
            elif isinstance(found, InProgress):
                self.awaiting(session, rec, found, started, summary)
            else:
                self.done(session, rec, found, started, summary)

    # ------------------------------------------------------------------ outcomes

    async def in_doubt(
        self,
        session: Session,
        action: Action,
        rec: ActionRecord,
        started: datetime,
        summary: str,
        error: str,
    ) -> None:
        """The write may have happened: in_doubt, then read back at once (if still ours)."""
        if not self.move(session, rec, "in_doubt", error=error):
            return
        finished = self.clock.now()
        self.attempt(rec.key, started, summary, None, error, "in_doubt", finished)
        again = self.ledger.claim(
            rec.key, expected="in_doubt", lease_seconds=self.config.lease_seconds
        )
        if again is not None:
            await self.settle(
                session, action, again, believe_absent_after=finished + self.settle_time
            )

    async def rejected(
        self,
        session: Session,
        action: Action,
        rec: ActionRecord,
        started: datetime,
        summary: str,
        exc: RejectedError,
    ) -> None:
        """Centra refused the write: failed, unless the refusal may mean "already done"."""
        code = getattr(exc, "error_code", None)
        detail = f"Centra refused: {exc}"
        failure = FAILURE_CODE[action.kind]
        if action.kind == "exchange_order" and code == ORDER_DUPLICATE_NUMBER:
            # The order number exists: the order was created before (a lost answer, a crash).
            self.attempt(rec.key, started, summary, None, detail, "in_flight")
            await self.settle(
                session, action, rec, believe_absent_after=None, on_absent=(failure, detail)
            )
        elif action.kind == "refund":
            # "Already refunded" (done before) and a gateway refusal (a FAILED entry) both come
            # back as a refusal; the return's refund entries tell them apart.
            self.attempt(rec.key, started, summary, None, detail, "in_flight")
            await self.settle(
                session, action, rec, believe_absent_after=None, on_absent=(failure, detail)
            )
        elif action.kind == "exchange_order" and code == ORDER_NO_STOCK:
            self.finish(session, rec, "failed", "exchange_out_of_stock", detail, started, summary)
        else:
            self.finish(session, rec, "failed", failure, detail, started, summary)

    async def settle(
        self,
        session: Session,
        action: Action,
        rec: ActionRecord,
        *,
        believe_absent_after: datetime | None,
        on_absent: tuple[str, str] | None = None,
        waiting: bool = False,
    ) -> None:
        """Read `action` back while holding its claim and settle it by what Centra shows.

        `believe_absent_after`: finding nothing before then is not yet proof (the uncertain call
        may still be executing). `on_absent`: fail with this (code, detail) when nothing is
        found, instead of sending again. `waiting`: Centra accepted the write (a refund the PSP
        was asked for): finding nothing is inconclusive, never a reason to send again.
        """
        started = self.clock.now()
        summary = f"{READ_BACK} {action.kind} {action.key}"
        session.report.read_backs += 1
        try:
            await session.pay(rec.key, "request")
            proof: ReadBack = await read_back(self.centra, action)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.inconclusive(session, action, rec, started, summary, error)
            return
        if isinstance(proof, Found):
            self.done(session, rec, proof, started, summary)
        elif isinstance(proof, Refused):
            self.finish(session, rec, "failed", proof.code, proof.summary, started, summary)
        elif isinstance(proof, InProgress):
            self.awaiting(session, rec, proof, started, summary)
        elif waiting:
            error = f"{ACCEPTED_UNSEEN}: {proof.summary}"
            self.inconclusive(session, action, rec, started, summary, error)
        elif on_absent is not None:
            code, detail = on_absent
            detail = f"{detail}; {proof.summary}"
            self.finish(session, rec, "failed", code, detail, started, summary)
        else:
            self.absent(session, rec, proof, believe_absent_after, started, summary)

    def absent(
        self,
        session: Session,
        rec: ActionRecord,
        proof: Absent,
        believe_after: datetime | None,
        started: datetime,
        summary: str,
    ) -> None:
        """Nothing found: pending again (safe to send), unless it is too soon to believe."""
        if believe_after is not None and self.clock.now() < believe_after:
            # Too soon to believe: Centra may still be executing the call we gave up on.
            error = f"{TOO_SOON}: {proof.summary}"
            if self.move(session, rec, "in_doubt", error=error, not_before=believe_after):
                session.scheduled.add(rec.key)
                response = f"{proof.summary}; not yet settled"
                self.attempt(rec.key, started, summary, response, None, "in_doubt")
            return
        sends = self.sends(rec.key)
        if sends >= self.config.max_attempts:
            detail = f"gave up after {sends} attempts; read back: {proof.summary}"
            code = FAILURE_CODE[rec.kind]
            self.finish(session, rec, "failed", code, detail, started, summary)
            return
        if self.move(session, rec, "pending", error=f"read back: {proof.summary}"):
            session.report.retried += 1
            response = f"{proof.summary}; safe to send"
            self.attempt(rec.key, started, summary, response, None, "pending")

    def awaiting(
        self,
        session: Session,
        rec: ActionRecord,
        progress: InProgress,
        started: datetime,
        summary: str,
    ) -> None:
        """A refund the PSP has not answered: wait in_doubt, read back again later (never
        resent). The run does not wait for it: a later run, or a Centra webhook, finds the
        answer; the reconciliation raises `refund_pending_too_long` if it never comes."""
        not_before = self.clock.now() + timedelta(seconds=self.config.psp_recheck_seconds)
        error = f"{PSP_PENDING}: {progress.summary}"
        if self.move(session, rec, "in_doubt", error=error, not_before=not_before):
            session.report.awaiting_psp.add(rec.key)
            session.parked.add(rec.key)  # not again in this run: the PSP answers in its time
            self.attempt(rec.key, started, summary, progress.summary, None, "in_doubt")

    def inconclusive(
        self,
        session: Session,
        action: Action,
        rec: ActionRecord,
        started: datetime,
        summary: str,
        error: str,
    ) -> None:
        """The read-back could not tell: in_doubt with a backoff; `action_in_doubt` (and no more
        read-backs this run) after `read_back_attempts` in a row."""
        failures = self.inconclusive_in_a_row(rec.key) + 1
        limit = self.config.read_back_attempts
        delay = self.backoff(failures)
        not_before = self.clock.now() + timedelta(seconds=delay)
        message = f"read-back inconclusive ({failures}/{limit}): {error}"
        if not self.move(session, rec, "in_doubt", error=message, not_before=not_before):
            return
        session.scheduled.add(rec.key)
        self.attempt(rec.key, started, summary, None, message, "in_doubt")
        if failures >= limit:
            detail = (
                f"outcome unknown after {failures} read-backs; still read back on later runs; "
                f"last error: {error}"
            )
            self.raise_(session, rec, "action_in_doubt", detail)
            session.parked.add(rec.key)

    def retry(
        self,
        session: Session,
        rec: ActionRecord,
        started: datetime,
        summary: str,
        error: str,
        retry_after: float | None,
    ) -> None:
        """Nothing changed in Centra: pending again after a backoff, or failed when exhausted."""
        sends = self.sends(rec.key) + 1  # this one is not recorded yet
        if sends >= self.config.max_attempts:
            detail = f"gave up after {sends} attempts: {error}"
            code = FAILURE_CODE[rec.kind]
            self.finish(session, rec, "failed", code, detail, started, summary)
            return
        delay = retry_after if retry_after is not None else self.backoff(sends)
        not_before = self.clock.now() + timedelta(seconds=max(0.0, delay))
        if self.move(session, rec, "pending", error=error, not_before=not_before):
            session.scheduled.add(rec.key)
            session.report.retried += 1
            self.attempt(rec.key, started, summary, None, error, "pending")

    def done(
        self, session: Session, rec: ActionRecord, found: Found, started: datetime, summary: str
    ) -> None:
        """The effect is in Centra: done, its failures healed, its problems raised."""
        if not self.move(session, rec, "done", centra_ref=found.ref):
            return
        self.attempt(rec.key, started, summary, found.summary, None, "done")
        self.heal(rec, f"done: Centra {found.ref}")
        for problem in found.problems:
            self.raise_(session, rec, problem.code, problem.detail, facts=problem.facts)

    def credentials_refused(
        self,
        session: Session,
        rec: ActionRecord,
        started: datetime,
        summary: str,
        exc: AuthError,
    ) -> None:
        """Centra refused our credentials: a fault of the run's configuration, not of the
        action. The action goes back to `pending` as it was (no exception for its owner, its
        send count unchanged), and the run starts nothing more: the sync reports the fault
        and exits non-zero, and once the setting is fixed the next run sends it."""
        setting = credentials_setting(rec.kind)
        fault = f"Centra refused returnbridge's credentials ({exc}); check {setting}"
        session.report.credentials_refused = fault
        session.stopped = True
        if self.move(session, rec, "pending", error=f"{CREDENTIALS_REFUSED}: {exc}"):
            sent = f"{CREDENTIALS_REFUSED}: {summary}"
            self.attempt(rec.key, started, sent, None, fault, "pending")

    def finish(
        self,
        session: Session,
        rec: ActionRecord,
        state: str,
        code: str,
        detail: str,
        started: datetime,
        summary: str,
    ) -> None:
        """`failed` or `blocked`, with the exception a person acts on."""
        if not self.move(session, rec, state, error=f"{code}: {detail}"):
            return
        self.attempt(rec.key, started, summary, None, detail, state)
        self.raise_(session, rec, code, detail)

    # ------------------------------------------------------------------ ledger helpers

    def move(
        self,
        session: Session,
        rec: ActionRecord,
        state: str,
        *,
        centra_ref: str | None = None,
        error: str | None = None,
        not_before: datetime | None = None,
    ) -> bool:
        """in_flight -> `state`; False when the claim was lost (a lease taken over)."""
        try:
            self.ledger.transition(
                rec.key,
                state,
                expected="in_flight",
                centra_ref=centra_ref,
                error=error,
                not_before=not_before,
            )
        except ActionStateError as exc:
            log.warning("action %s: lost its claim before settling as %s (%s)", rec.key, state, exc)
            return False
        session.report.outcomes[rec.key] = state
        session.report.return_ids[rec.key] = rec.reveni_return_id
        return True

    def attempt(
        self,
        key: str,
        started: datetime,
        summary: str,
        response: str | None,
        error: str | None,
        outcome: str,
        finished: datetime | None = None,
    ) -> None:
        """Record one attempt (a send or a read-back) in the ledger."""
        self.ledger.record_attempt(
            key,
            started_at=started,
            finished_at=finished or self.clock.now(),
            request_summary=summary,
            response=response,
            error=error,
            outcome=outcome,
        )

    def raise_(
        self,
        session: Session,
        rec: ActionRecord,
        code: str,
        detail: str,
        *,
        facts: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Raise exception `code` about `rec` (in the ledger and the run's report), with the
        `facts` its owner needs (a read-back `Problem`'s)."""
        exc = ReturnException(
            code=code,
            reveni_return_id=rec.reveni_return_id,
            order_number=rec.order_number,
            amount=lenient_decimal(rec.payload.get("amount")) if rec.kind == "refund" else None,
            currency=rec.payload.get("currency") if rec.kind == "refund" else None,
            detail=f"{rec.key}: {detail}",
            facts=facts,
        )
        self.ledger.raise_exception(exc, action_key=rec.key, now=self.clock.now())
        session.report.exceptions.append(exc)

    def heal(self, rec: ActionRecord, note: str) -> None:
        """Resolve the open exceptions this action raised about its own failure."""
        for exc in self.ledger.exceptions(statuses=_LIVE, reveni_return_id=rec.reveni_return_id):
            if exc.action_key == rec.key and exc.code in HEALED_ON_DONE:
                # a person may have closed it meanwhile: their note stands
                with contextlib.suppress(ExceptionClosed):
                    self.ledger.resolve_exception(exc.id, note=note, now=self.clock.now())

    def sends(self, key: str) -> int:
        """Recorded attempts to send `key` (read-backs are not sends; the ledger's `attempts`
        counts every claim, read-backs included)."""
        return sum(
            1
            for a in self.ledger.attempts(key)
            if not a.request_summary.startswith((READ_BACK, CREDENTIALS_REFUSED))
        )

    def inconclusive_in_a_row(self, key: str) -> int:
        """Inconclusive read-backs of `key` since its last other attempt."""
        count = 0
        for attempt in reversed(self.ledger.attempts(key)):
            is_read_back = attempt.request_summary.startswith(READ_BACK)
            if not (is_read_back and attempt.error is not None and attempt.outcome == "in_doubt"):
                break
            count += 1
        return count

    @property
    def settle_time(self) -> timedelta:
        """How long after an uncertain call finding nothing is believed."""
        return timedelta(seconds=self.config.in_doubt_settle_seconds)

    def backoff(self, failures: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random, capped."""
        ceiling = min(
            self.config.backoff_max_seconds,
            self.config.backoff_seconds * 2 ** max(0, failures - 1),
        )
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)
