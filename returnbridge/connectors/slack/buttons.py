"""The buttons of a digest item and the ids that tie a Slack interaction back to an exception.

The digest renderer (`reports/digest.py`) puts, under each item's section (block id
`exc:<id>`), an actions block (block id `act:<id>`) built by `item_actions`. A click reaches the
receiver's `POST /slack/actions` as a signed `block_actions` payload naming the action id and
the exception id (the button's value); the receiver acts through `ledger/queue.py` and updates
the message in place (`chat.update`).

A retry that can move money carries Slack's confirm dialog (the warning with the amount) and a
distinct action id, `RETRY_CONFIRMED`: Slack sends that click only after the person pressed
"Retry anyway", so the receiver treats it as confirmed, as `exceptions retry --confirm` is.
"""

from __future__ import annotations

from typing import Any, Final

RETRY: Final = "rb_retry"
RETRY_CONFIRMED: Final = "rb_retry_confirmed"  # only on buttons that carried a confirm dialog
RESOLVE: Final = "rb_resolve"  # opens a modal asking for a note
IGNORE: Final = "rb_ignore"  # opens a modal asking for a reason
ASSIGN: Final = "rb_assign"  # "Assign to me"
ACTION_IDS: Final = (RETRY, RETRY_CONFIRMED, RESOLVE, IGNORE, ASSIGN)

ITEM_PREFIX: Final = "exc:"  # the item's section block
ACTIONS_PREFIX: Final = "act:"  # its buttons
STATE_PREFIX: Final = "done:"  # the context line saying what was done, added by the receiver

_CONFIRM_TEXT_LIMIT: Final = 300  # Block Kit: a confirm dialog's text is at most 300 characters


def item_block_id(exception_id: int) -> str:
    return f"{ITEM_PREFIX}{exception_id}"


def actions_block_id(exception_id: int) -> str:
    return f"{ACTIONS_PREFIX}{exception_id}"


def state_block_id(exception_id: int) -> str:
    return f"{STATE_PREFIX}{exception_id}"


def exception_id_of(block_id: str) -> int | None:
    """The exception id a block id of a digest item names (any prefix above), or None."""
    for prefix in (ITEM_PREFIX, ACTIONS_PREFIX, STATE_PREFIX):
        if block_id.startswith(prefix) and block_id[len(prefix) :].isdigit():
            return int(block_id[len(prefix) :])
    return None


def _button(
    text: str, action_id: str, exception_id: int, style: str | None = None
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": str(exception_id),
    }
    if style:
        button["style"] = style
    return button


def item_actions(exception_id: int, *, retry_warning: str | None) -> dict[str, Any]:
    """The actions block under digest item `exception_id`: Retry (with a confirm dialog showing
    `retry_warning` when the retry can move money), Resolve, Ignore, Assign to me."""
    if retry_warning is None:
        retry = _button("Retry", RETRY, exception_id)
    else:
        retry = _button("Retry", RETRY_CONFIRMED, exception_id, style="danger")
        text = retry_warning
        if len(text) > _CONFIRM_TEXT_LIMIT:
            text = text[: _CONFIRM_TEXT_LIMIT - 1] + "…"
        retry["confirm"] = {
            "title": {"type": "plain_text", "text": "This can move money"},
            "text": {"type": "plain_text", "text": text},
            "confirm": {"type": "plain_text", "text": "Retry anyway"},
            "deny": {"type": "plain_text", "text": "Cancel"},
            "style": "danger",
        }
    return {
        "type": "actions",
        "block_id": actions_block_id(exception_id),
        "elements": [
            retry,
            _button("Resolve…", RESOLVE, exception_id, style="primary"),
            _button("Ignore…", IGNORE, exception_id),
            _button("Assign to me", ASSIGN, exception_id),
        ],
    }
