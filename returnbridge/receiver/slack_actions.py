"""`POST /slack/actions`: the digest's buttons and modals, acting through `ledger/queue.py`.

Slack sends every interaction of the app here (its "Interactivity Request URL"), form-encoded
with one field `payload`, signed with the app's signing secret (connectors/slack/interactions.py
verifies it; `SlackSettings.signing_secret`, and `next_signing_secret` while rotating). Nothing is
done for a request that is not signed with one of them.

What a click does (`interactions.parse_interaction` reads it):

- Retry (`rb_retry`): `act(retry)`; a retry that can move money is refused here (the digest
  showed that button without Slack's confirm dialog) and the person sees the warning;
- Retry with the confirm dialog (`rb_retry_confirmed`): `act(retry, confirmed=True)`;
- Assign to me (`rb_assign`): `act(assign, assignee="@username")`;
- Resolve… / Ignore… (`rb_resolve`, `rb_ignore`): opens the modal asking for a note (a reason
  for ignore, required); its `view_submission` does `act(resolve|ignore, note=...)`, and an
  empty reason keeps the modal open with the error under the field.

The actor in the exception's history is `slack:<user id> (<username>)`. Once done, the digest
message is updated in place (`chat.update`): the item's section kept, its buttons removed when
the exception is now closed, a context line `done:<id>` saying what was done by whom. A refusal
(unknown or closed exception, a retry needing confirmation, the ledger unavailable) is shown to
the person only (`chat.postEphemeral`) and changes nothing.

Slack wants an answer within 3 seconds: the ledger call is made inline (it is quick), every
Slack Web API call after the answer is sent (a Starlette background task). A Slack failure
there is logged; the ledger change stands (the next digest shows the exception as it is).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from returnbridge.connectors.slack import interactions
from returnbridge.connectors.slack.buttons import ASSIGN, RETRY_CONFIRMED
from returnbridge.connectors.slack.interactions import (
    ButtonClick,
    InteractionError,
    ModalSubmission,
    NotOurs,
    SlackSignatureError,
)
from returnbridge.connectors.slack.poster import DigestPoster
from returnbridge.connectors.slack.settings import SlackSettings
from returnbridge.ledger.queue import ConfirmationNeeded, Outcome, act
from returnbridge.ledger.store import ExceptionClosed, Ledger

log = logging.getLogger(__name__)

SLACK_ACTIONS_PATH: Final = "/slack/actions"

SlackClientFactory = Callable[[], DigestPoster]

_LEDGER_DOWN: Final = (
    "returnbridge could not reach its ledger, so nothing was recorded; try again in a minute"
)


class SlackRefused(Exception):
    """A request refused before anything was done: the HTTP status and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class _Done:
    """An action done: what to write under the item, and whether its buttons go."""

    outcome: Outcome
    line: str


class SlackActions:
    """Handles one verified Slack interaction at a time (see the module docstring).

    `client` builds the Web API client for the calls made after answering (default:
    `slack.client()`, which needs the bot token); `clock` is the time signatures are checked
    against (default: the wall clock)."""

    def __init__(
        self,
        ledger: Ledger,
        slack: SlackSettings,
        *,
        client: SlackClientFactory | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not slack.signing_secrets:
            raise ValueError("Slack interactivity needs a signing secret")
        self.ledger = ledger
        self.slack = slack
        self._client = client or slack.client
        self._clock = clock

    # ------------------------------------------------------------------ the request

    async def handle(self, headers: Mapping[str, str], body: bytes) -> Response:
        """The answer to one request whose `body` was read; SlackRefused for a 4xx."""
        try:
            interactions.verify_request(
                self.slack.signing_secrets,
                body,
                headers.get(interactions.TIMESTAMP_HEADER),
                headers.get(interactions.SIGNATURE_HEADER),
                now=None if self._clock is None else self._clock(),
            )
        except SlackSignatureError as exc:
            raise SlackRefused(401, str(exc)) from None
        try:
            interaction = interactions.parse_interaction(interactions.decode_payload(body))
        except InteractionError as exc:
            raise SlackRefused(400, str(exc)) from None
        if isinstance(interaction, NotOurs):
            log.info("Slack %s payload not acted on: %s", interaction.kind, interaction.reason)
            return Response(status_code=200)
        if isinstance(interaction, ModalSubmission):
            return await self._submitted(interaction)
        return await self._clicked(interaction)

    # ------------------------------------------------------------------ buttons

    async def _clicked(self, click: ButtonClick) -> Response:
        closing = click.closing
        if closing is not None:
            return await self._open_modal(click, closing)
        user = click.user
        if click.action_id == ASSIGN:
            action, confirmed = "assign", False
        else:
            action, confirmed = "retry", click.action_id == RETRY_CONFIRMED
        try:
            outcome = await run_in_threadpool(
                act,
                self.ledger,
                click.exception_id,
                action,
                actor=user.actor,
                assignee=user.handle if action == "assign" else None,
                confirmed=confirmed,
            )
        except ConfirmationNeeded as needed:
            text = (
                f"⚠️ #{click.exception_id} was not retried: {needed.warning}\n"
                "Retry it from a digest whose Retry button asks you to confirm, or with "
                f"`returnbridge exceptions retry {click.exception_id} --confirm`."
            )
            return self._refused(click.channel, user.id, click.exception_id, text)
        except (KeyError, ExceptionClosed, ValueError) as exc:
            return self._refused(click.channel, user.id, click.exception_id, _why(exc))
        except Exception as exc:
            _ledger_down(action, click.exception_id, exc)
            return self._refused(click.channel, user.id, click.exception_id, _LEDGER_DOWN)
        line = interactions.done_line(
            "assign" if action == "assign" else "retry",
            user,
            message=outcome.message,
            confirmed=confirmed,
        )
        log.info("Slack: %s by %s: %s", action, user.actor, outcome.message)
        task = BackgroundTask(
            self._update,
            click.channel,
            click.ts,
            _Done(outcome, line),
            (click.text, click.blocks),
        )
        return Response(status_code=200, background=task)

    async def _open_modal(self, click: ButtonClick, action: interactions.CloseAction) -> Response:
        user = click.user
        try:
            record = await run_in_threadpool(self.ledger.exception, click.exception_id)
        except Exception as exc:
            _ledger_down(action, click.exception_id, exc)
            return self._refused(click.channel, user.id, click.exception_id, _LEDGER_DOWN)
        if record is None:
            why = _why(KeyError(f"no exception with id {click.exception_id} in the ledger"))
            return self._refused(click.channel, user.id, click.exception_id, why)
        if record.closed:
            why = _why(ExceptionClosed(record))
            return self._refused(click.channel, user.id, click.exception_id, why)
        if click.trigger_id is None:
            raise SlackRefused(400, "the click carries no trigger_id to open the modal with")
        view = interactions.close_modal(
            action,
            click.exception_id,
            channel=click.channel,
            ts=click.ts,
            item_text=interactions.item_text(click.blocks, click.exception_id),
        )
        task = BackgroundTask(self._open_view, click.trigger_id, view, click.exception_id)
        return Response(status_code=200, background=task)

    # ------------------------------------------------------------------ the modal

    async def _submitted(self, submission: ModalSubmission) -> Response:
        user = submission.user
        if submission.action == "ignore" and not submission.note:
            return JSONResponse(
                interactions.note_errors("Say why it is ignored: the reason is kept in its history")
            )
        try:
            outcome = await run_in_threadpool(
                act,
                self.ledger,
                submission.exception_id,
                submission.action,
                actor=user.actor,
                note=submission.note,
            )
        except (KeyError, ExceptionClosed) as exc:
            return self._refused(submission.channel, user.id, submission.exception_id, _why(exc))
        except ValueError as exc:
            return JSONResponse(interactions.note_errors(str(exc)))
        except Exception as exc:
            _ledger_down(submission.action, submission.exception_id, exc)
            return JSONResponse(interactions.note_errors(_LEDGER_DOWN))
        line = interactions.done_line(submission.action, user, note=submission.note)
        log.info("Slack: %s by %s: %s", submission.action, user.actor, outcome.message)
        task = BackgroundTask(self._update, submission.channel, submission.ts, _Done(outcome, line))
        return Response(status_code=200, background=task)  # empty: Slack closes the modal

    # ------------------------------------------------------------------ after answering

    def _refused(self, channel: str, user: str, exception_id: int, text: str) -> Response:
        log.info("Slack action on #%d refused: %s", exception_id, text.splitlines()[0])
        task = BackgroundTask(self._ephemeral, channel, user, text)
        return Response(status_code=200, background=task)

    def _ephemeral(self, channel: str, user: str, text: str) -> None:
        try:
            with self._client() as client:
                client.post_ephemeral(channel, user, text)
        except Exception as exc:
            log.error("could not show %s why nothing was done in %s: %s", user, channel, exc)

    def _open_view(self, trigger_id: str, view: dict[str, Any], exception_id: int) -> None:
        try:
            with self._client() as client:
                client.open_view(trigger_id, view)
        except Exception as exc:
            log.error("could not open the modal for #%d: %s", exception_id, exc)

    def _update(
        self,
        channel: str,
        ts: str,
        done: _Done,
        content: tuple[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        """Write `done` into the digest message at `ts`: its `content` (text, blocks) as the
        click carried it, or, for a modal's submission, as read back from Slack."""
        record = done.outcome.record
        try:
            with self._client() as client:
                if content is None:
                    message = client.message(channel, ts)
                    if message is None:
                        log.warning(
                            "digest message %s in %s is gone; #%d not shown", ts, channel, record.id
                        )
                        return
                    text, blocks = message.get("text"), message.get("blocks")
                    if not isinstance(blocks, list):
                        blocks = []
                    content = (
                        text if isinstance(text, str) else "",
                        [b for b in blocks if isinstance(b, dict)],
                    )
                self._write(client, channel, ts, *content, done)
        except Exception as exc:
            log.error(
                "could not update the digest message %s in %s for #%d (%s is recorded): %s",
                ts,
                channel,
                record.id,
                record.status,
                exc,
            )

    def _write(
        self,
        client: DigestPoster,
        channel: str,
        ts: str,
        text: str,
        blocks: list[dict[str, Any]],
        done: _Done,
    ) -> None:
        record = done.outcome.record
        updated = interactions.updated_blocks(
            blocks, record.id, done.line, keep_buttons=not record.closed
        )
        if updated is None:
            log.warning(
                "#%d is not in the digest message %s in %s; left as is", record.id, ts, channel
            )
            return
        client.update(channel, ts, text or done.outcome.message, updated)


def _ledger_down(action: str, exception_id: int, exc: BaseException) -> None:
    """Log a Slack action the ledger could not take (the person is told `_LEDGER_DOWN`)."""
    log.error("Slack %s of #%d: ledger unavailable (%s)", action, exception_id, _describe(exc))


def _describe(exc: BaseException) -> str:
    """One line about a ledger failure without SQL parameters (they would carry the note)."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).splitlines()[0] if str(cause) else ""
    return f"{type(cause).__name__}: {text[:200]}" if text else type(cause).__name__


def _why(exc: BaseException) -> str:
    """A refusal in words for the person who clicked."""
    if isinstance(exc, KeyError):
        text = str(exc.args[0]) if exc.args else str(exc)
        return f"Nothing was done: {text} (it may come from another returnbridge)."
    return f"Nothing was done: {exc}"
