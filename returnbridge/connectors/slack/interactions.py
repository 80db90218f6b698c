"""Slack interactivity, the pure part: request signing, the payloads the digest's buttons and
modals send, the modal asking for a note, and the digest message updated in place.

The receiver's `POST /slack/actions` (receiver/slack_actions.py) does the HTTP and the ledger;
the Slack stand-in (simulators/slack/app.py) signs with the same functions, so the two cannot
disagree.

Signing (api.slack.com/authentication/verifying-requests-from-slack): Slack sends
`X-Slack-Request-Timestamp: <unix seconds>` and `X-Slack-Signature: v0=<hex>`, where the hex is
HMAC-SHA256, keyed with the app's signing secret, of `"v0:<timestamp>:<raw body>"`. A timestamp
more than five minutes from now is a replay. Several secrets may be given (the current one and
the next, while rotating): a request signed with any of them passes.

The payloads (form body, one field `payload` holding JSON):

- `block_actions`, a click on a digest item's button (connectors/slack/buttons.py): the action
  id, the exception id (the button's value), who clicked, the message (channel, ts, blocks) and a
  `trigger_id` to open a modal with;
- `view_submission`, the modal `close_modal` builds (Resolve…/Ignore…) submitted: the note typed,
  and in `private_metadata` the exception, the action and the message to update.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlencode

from returnbridge.connectors import wire_json
from returnbridge.connectors.slack.buttons import (
    ACTION_IDS,
    ACTIONS_PREFIX,
    ASSIGN,
    IGNORE,
    RESOLVE,
    RETRY,
    RETRY_CONFIRMED,
    actions_block_id,
    item_block_id,
    state_block_id,
)

SIGNATURE_HEADER: Final = "X-Slack-Signature"
TIMESTAMP_HEADER: Final = "X-Slack-Request-Timestamp"
SIGNATURE_VERSION: Final = "v0"
TOLERANCE_SECONDS: Final = 300  # Slack's advice: refuse requests more than 5 minutes old

MODAL_CALLBACK_ID: Final = "rb_close_exception"  # the Resolve…/Ignore… modal
NOTE_BLOCK_ID: Final = "rb_note"  # its one input block ...
NOTE_ACTION_ID: Final = "rb_note"  # ... and that block's plain_text_input
NOTE_MAX_LENGTH: Final = 2000

MAX_BLOCKS: Final = 50  # Block Kit: a message holds at most 50 blocks
_MODAL_TITLE_LIMIT: Final = 24  # Block Kit: a modal's title is at most 24 characters
_SECTION_TEXT_LIMIT: Final = 3000
_DONE_NOTE_LIMIT: Final = 500  # how much of a note the message's "done" line repeats

CloseAction = Literal["resolve", "ignore"]
_CLOSING: Final[dict[str, CloseAction]] = {RESOLVE: "resolve", IGNORE: "ignore"}


class SlackSignatureError(ValueError):
    """The request is not signed by Slack with a secret we hold; the message says why."""


class SlackReplayError(SlackSignatureError):
    """The request timestamp is more than the tolerance away from now: a replay, or a skewed
    clock."""


class InteractionError(ValueError):
    """A signed request whose payload is not what Slack sends (the receiver answers 400)."""


# --------------------------------------------------------------------------- signing


def compute_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """`v0=<hex HMAC-SHA256 of "v0:<timestamp>:<body>">` keyed with `secret`."""
    base = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with `body` at `timestamp` (default: now), content type included."""
    when = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        TIMESTAMP_HEADER: str(when),
        SIGNATURE_HEADER: compute_signature(secret, when, body),
    }


def verify_request(
    secrets: Sequence[str],
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now: float | None = None,
    tolerance_seconds: int = TOLERANCE_SECONDS,
) -> int:
    """Check that Slack signed `body` with one of `secrets` at a `timestamp` within
    `tolerance_seconds` of `now`; return the timestamp.

    SlackSignatureError names what is wrong (a header missing or malformed, no secret matching);
    its subclass SlackReplayError an old (or future) timestamp. Compared in constant time."""
    if not secrets:
        raise ValueError("no signing secret to verify Slack requests with")
    if not timestamp:
        raise SlackSignatureError(f"missing {TIMESTAMP_HEADER} header")
    if not signature:
        raise SlackSignatureError(f"missing {SIGNATURE_HEADER} header")
    text = timestamp.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise SlackSignatureError(f"{TIMESTAMP_HEADER} {text[:20]!r} is not a unix time")
    when = int(text)
    current = time.time() if now is None else now
    if abs(current - when) > tolerance_seconds:
        side = "old" if when < current else "far in the future"
        raise SlackReplayError(
            f"{TIMESTAMP_HEADER} is {abs(current - when):.0f}s {side}; more than "
            f"{tolerance_seconds}s from now (a replayed request, or a skewed clock)"
        )
    given = signature.strip()
    if not given.startswith(f"{SIGNATURE_VERSION}="):
        raise SlackSignatureError(f"{SIGNATURE_HEADER} is not a {SIGNATURE_VERSION}= signature")
    # compare_digest refuses non-ASCII text; such a candidate cannot match a hex digest anyway.
    if not given.isascii() or not any(
        hmac.compare_digest(compute_signature(secret, text, body), given) for secret in secrets
    ):
        raise SlackSignatureError(
            f"{SIGNATURE_HEADER} does not match the body with any configured signing secret"
        )
    return when


# --------------------------------------------------------------------------- payloads


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The form body Slack sends: one field `payload` holding the JSON."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def decode_payload(body: bytes) -> dict[str, Any]:
    """The JSON object of a form body `payload=<json>`; InteractionError naming the problem
    (deep nesting and huge integers included)."""
    try:
        return wire_json.form_payload(body)
    except wire_json.UnreadableJson as exc:
        raise InteractionError(str(exc)) from None


@dataclass(frozen=True)
class SlackUser:
    """Who clicked or submitted."""

    id: str
    username: str

    @property
    def actor(self) -> str:
        """How the ledger's history names them: `slack:<user id> (<username>)`."""
        return f"slack:{self.id} ({self.username})"

    @property
    def handle(self) -> str:
        """`@username`, as the digest message and the assignee show them."""
        return f"@{self.username}"


@dataclass(frozen=True)
class ButtonClick:
    """A `block_actions` payload: one of the digest item's buttons pressed."""

    user: SlackUser
    action_id: str  # one of buttons.ACTION_IDS
    exception_id: int
    channel: str  # channel id
    ts: str  # the digest message
    trigger_id: str | None
    text: str  # the message's fallback text
    blocks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def closing(self) -> CloseAction | None:
        """ "resolve" or "ignore" when the button opens the modal asking for a note; else None."""
        return _CLOSING.get(self.action_id)


@dataclass(frozen=True)
class ModalSubmission:
    """A `view_submission` of the modal `close_modal` built."""

    user: SlackUser
    view_id: str
    action: CloseAction
    exception_id: int
    channel: str
    ts: str
    note: str


@dataclass(frozen=True)
class NotOurs:
    """A payload returnbridge does not act on (another app's button, a modal closed, ...)."""

    kind: str
    reason: str


Interaction = ButtonClick | ModalSubmission | NotOurs


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _obj(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one (a field Slack left out)."""
    return value if isinstance(value, dict) else {}


def _user(payload: Mapping[str, Any]) -> SlackUser:
    user = payload.get("user")
    if not isinstance(user, dict) or _str(user.get("id")) is None:
        raise InteractionError("`user.id` is missing")
    user_id = str(user["id"])
    username = _str(user.get("username")) or _str(user.get("name")) or user_id
    return SlackUser(user_id, username)


def parse_interaction(payload: Mapping[str, Any]) -> Interaction:
    """What `payload` asks of returnbridge; InteractionError when it is malformed."""
    kind = payload.get("type")
    if kind == "block_actions":
        return _block_actions(payload)
    if kind == "view_submission":
        return _view_submission(payload)
    if not isinstance(kind, str) or not kind:
        raise InteractionError("`type` is missing")
    return NotOurs(kind, f"returnbridge does not handle {kind!r} payloads")


def _block_actions(payload: Mapping[str, Any]) -> Interaction:
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise InteractionError("`actions` must be a non-empty list of objects")
    action = actions[0]
    action_id = action.get("action_id")
    if action_id not in ACTION_IDS:
        return NotOurs("block_actions", f"action {action_id!r} is not a digest button")
    user = _user(payload)
    value = action.get("value")
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18):
        raise InteractionError(f"the button's value {value!r} is not an exception id")
    exception_id = int(value)
    block_id = action.get("block_id")
    if (
        isinstance(block_id, str)
        and block_id.startswith(ACTIONS_PREFIX)
        and block_id != actions_block_id(exception_id)
    ):
        raise InteractionError(f"block {block_id!r} does not hold exception {exception_id}")
    container, message = _obj(payload.get("container")), _obj(payload.get("message"))
    channel = _str(container.get("channel_id")) or _str(_obj(payload.get("channel")).get("id"))
    ts = _str(container.get("message_ts")) or _str(message.get("ts"))
    if channel is None or ts is None:
        raise InteractionError("the click is not on a message (no channel or message ts)")
    blocks = message.get("blocks") or []
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise InteractionError("`message.blocks` must be a list of objects")
    text = message.get("text")
    return ButtonClick(
        user=user,
        action_id=str(action_id),
        exception_id=exception_id,
        channel=channel,
        ts=ts,
        trigger_id=_str(payload.get("trigger_id")),
        text=text if isinstance(text, str) else "",
        blocks=[dict(b) for b in blocks],
    )


def _view_submission(payload: Mapping[str, Any]) -> Interaction:
    view = payload.get("view")
    if not isinstance(view, dict):
        raise InteractionError("`view` is missing")
    if view.get("callback_id") != MODAL_CALLBACK_ID:
        return NotOurs("view_submission", f"modal {view.get('callback_id')!r} is not ours")
    user = _user(payload)
    try:
        meta = json.loads(view.get("private_metadata") or "")
    except json.JSONDecodeError:
        raise InteractionError("the modal's private_metadata is not JSON") from None
    if not isinstance(meta, dict):
        raise InteractionError("the modal's private_metadata is not a JSON object")
    exception_id, action = meta.get("exception_id"), meta.get("action")
    channel, ts = _str(meta.get("channel")), _str(meta.get("ts"))
    if isinstance(exception_id, bool) or not isinstance(exception_id, int):
        raise InteractionError("the modal's private_metadata has no exception_id")
    if action not in ("resolve", "ignore"):
        raise InteractionError(f"the modal's action {action!r} is not resolve or ignore")
    if channel is None or ts is None:
        raise InteractionError("the modal's private_metadata has no channel or ts")
    values = _obj(_obj(view.get("state")).get("values"))
    note = _obj(_obj(values.get(NOTE_BLOCK_ID)).get(NOTE_ACTION_ID)).get("value")
    return ModalSubmission(
        user=user,
        view_id=_str(view.get("id")) or "",
        action=action,
        exception_id=exception_id,
        channel=channel,
        ts=ts,
        note=note.strip() if isinstance(note, str) else "",
    )


# --------------------------------------------------------------------------- the modal


def close_modal(
    action: CloseAction,
    exception_id: int,
    *,
    channel: str,
    ts: str,
    item_text: str | None = None,
) -> dict[str, Any]:
    """The modal a Resolve… or Ignore… click opens (`views.open`): one text input, the note
    (optional) or the reason (required); `private_metadata` says which exception, which action
    and which message to update once submitted."""
    resolving = action == "resolve"
    verb = "Resolve" if resolving else "Ignore"
    title = f"{verb} #{exception_id}"
    if len(title) > _MODAL_TITLE_LIMIT:
        title = verb
    blocks: list[dict[str, Any]] = []
    if item_text:
        text = item_text
        if len(text) > _SECTION_TEXT_LIMIT:
            text = text[: _SECTION_TEXT_LIMIT - 1] + "…"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    blocks.append(
        {
            "type": "input",
            "block_id": NOTE_BLOCK_ID,
            "optional": resolving,
            "label": {
                "type": "plain_text",
                "text": "What was done (optional)" if resolving else "Why ignore it?",
            },
            "hint": {
                "type": "plain_text",
                "text": "Kept in the exception's history with your name."
                if resolving
                else "Required: kept in the exception's history with your name. An ignored "
                "exception reopens only if it is found again about more money.",
            },
            "element": {
                "type": "plain_text_input",
                "action_id": NOTE_ACTION_ID,
                "multiline": True,
                "max_length": NOTE_MAX_LENGTH,
            },
        }
    )
    metadata = {"exception_id": exception_id, "action": action, "channel": channel, "ts": ts}
    return {
        "type": "modal",
        "callback_id": MODAL_CALLBACK_ID,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": verb},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json.dumps(metadata, separators=(",", ":")),
        "blocks": blocks,
    }


def note_errors(message: str) -> dict[str, Any]:
    """The answer to a view_submission that keeps the modal open with `message` under the note."""
    return {"response_action": "errors", "errors": {NOTE_BLOCK_ID: message}}


# --------------------------------------------------------------------------- the message


def escape(text: str) -> str:
    """`text` safe inside Slack mrkdwn (&, < and > escaped: no injected links or mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def next_step(message: str) -> str:
    """What happens next, from `act`'s answer to a retry ("#12: re-queued refund:R1; the next
    sync run sends it." → "the next sync run sends it")."""
    text = message.strip()
    if text.startswith("#"):
        text = text.partition(": ")[2] or text
    head, sep, rest = text.partition("; ")
    return (rest if sep else head).rstrip(".")


def done_line(
    action: Literal["retry", "resolve", "ignore", "assign"],
    user: SlackUser,
    *,
    message: str = "",
    note: str = "",
    confirmed: bool = False,
) -> str:
    """The line the digest shows under an item once `user` acted on it (mrkdwn, escaped), e.g.
    "✅ Resolved by @alice: refunded by hand" or "🔁 Retry queued by @bob: the next sync run sends
    it"."""
    who = escape(user.handle)
    said = escape(_clip(note, _DONE_NOTE_LIMIT)) if note.strip() else ""
    if action == "retry":
        verb = "Retry confirmed and queued" if confirmed else "Retry queued"
        step = escape(next_step(message)) if message else ""
        return f"🔁 {verb} by {who}" + (f": {step}" if step else "")
    if action == "resolve":
        return f"✅ Resolved by {who}" + (f": {said}" if said else "")
    if action == "ignore":
        return f"🚫 Ignored by {who}" + (f": {said}" if said else "")
    return f"👤 Assigned to {who}"


def item_text(blocks: Sequence[Mapping[str, Any]], exception_id: int) -> str | None:
    """The text of digest item `exception_id`'s section in `blocks`, if it is there."""
    wanted = item_block_id(exception_id)
    for block in blocks:
        if block.get("block_id") == wanted:
            text = block.get("text")
            if isinstance(text, dict) and isinstance(text.get("text"), str):
                return str(text["text"])
    return None


def updated_blocks(
    blocks: Sequence[Mapping[str, Any]],
    exception_id: int,
    line: str,
    *,
    keep_buttons: bool,
) -> list[dict[str, Any]] | None:
    """`blocks` of a digest message with item `exception_id` marked done: its section kept, its
    buttons kept or (closed) removed, and a context block `done:<id>` saying `line` under them
    (replacing an earlier one). Every other block is left as it is.

    None when the item is not in `blocks` (nothing to update). A message at Block Kit's 50-block
    limit drops the item's buttons to make room for the line."""
    item_id, act_id, done_id = (
        item_block_id(exception_id),
        actions_block_id(exception_id),
        state_block_id(exception_id),
    )
    kept = [dict(b) for b in blocks if b.get("block_id") != done_id]
    if not keep_buttons or len(kept) + 1 > MAX_BLOCKS:
        kept = [b for b in kept if b.get("block_id") != act_id]
    ids = [b.get("block_id") for b in kept]
    anchor = act_id if act_id in ids else item_id
    if anchor not in ids or len(kept) + 1 > MAX_BLOCKS:
        return None
    done = {
        "type": "context",
        "block_id": done_id,
        "elements": [{"type": "mrkdwn", "text": line}],
    }
    at = ids.index(anchor) + 1
    return [*kept[:at], done, *kept[at:]]


__all__ = [
    "ASSIGN",
    "IGNORE",
    "MODAL_CALLBACK_ID",
    "NOTE_ACTION_ID",
    "NOTE_BLOCK_ID",
    "RESOLVE",
    "RETRY",
    "RETRY_CONFIRMED",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "ButtonClick",
    "Interaction",
    "InteractionError",
    "ModalSubmission",
    "NotOurs",
    "SlackReplayError",
    "SlackSignatureError",
    "SlackUser",
    "close_modal",
    "compute_signature",
    "decode_payload",
    "done_line",
    "encode_payload",
    "escape",
    "item_text",
    "next_step",
    "note_errors",
    "parse_interaction",
    "signed_headers",
    "updated_blocks",
    "verify_request",
]
