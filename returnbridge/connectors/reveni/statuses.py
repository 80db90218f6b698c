"""Reveni return statuses and the moves between them.

The states are confirmed ([R-DOC S5, S6]); the graph between them is [INFER]. The simulator
enforces it, scenario files are checked against it, and the planner reads the groupings.

    pending -> in_progress -> shipped -> received -> for_review -> accepted -> completed
                   |  |                                        -> partially_accepted -> completed
                   |  |                                        -> rejected
                   |  +-> cancelled        (merchant, shopper, or auto-cancel)
                   +----> expired          (window lapsed)
    any non-terminal -> on_hold -> back to the status it was held in

Forward moves may skip steps (a carrier scan can move in_progress straight to received; a
merchant can validate a parcel that was never scanned).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

ReturnStatus = Literal[
    "pending", "in_progress", "shipped", "received", "for_review", "accepted",
    "partially_accepted", "rejected", "cancelled", "expired", "on_hold", "completed",
]  # fmt: skip
STATUSES: Final[tuple[str, ...]] = get_args(ReturnStatus)

# The main line, in order; a forward move may skip steps up to the decision.
PROGRESS: Final = ("pending", "in_progress", "shipped", "received", "for_review")
DECISIONS: Final = frozenset({"accepted", "partially_accepted", "rejected"})
# Inspection done with at least one item accepted: Centra effects are due.
ACCEPTED: Final = frozenset({"accepted", "partially_accepted"})
TERMINAL: Final = frozenset({"completed", "rejected", "cancelled", "expired"})
# Withdrawn before inspection: no Centra write, and no claim on the order's quantities.
WITHDRAWN: Final = frozenset({"cancelled", "expired"})
# Not yet inspected (the instant 30-day clock is running).
AWAITING_INSPECTION: Final = frozenset(PROGRESS)


class StatusMoveError(ValueError):
    """A status change the state machine does not allow."""


def allowed_moves(current: str, held_from: str | None = None) -> frozenset[str]:
    """The statuses a return in `current` may move to (`held_from`: the status before on_hold)."""
    if current == "on_hold":
        return frozenset({held_from}) if held_from else frozenset()
    if current in TERMINAL:
        return frozenset()
    if current in ACCEPTED:
        return frozenset({"completed", "on_hold"})
    moves = set(PROGRESS[PROGRESS.index(current) + 1 :]) | DECISIONS | {"on_hold"}
    if current in ("pending", "in_progress"):
        moves |= WITHDRAWN
    if current == "pending":
        moves -= DECISIONS  # nothing to inspect before the request is confirmed
    return frozenset(moves)


def check_move(current: str, new: str, held_from: str | None = None) -> None:
    """Raise StatusMoveError unless `current -> new` is allowed."""
    if new not in STATUSES:
        raise StatusMoveError(f"unknown status {new!r}; expected one of {list(STATUSES)}")
    if new not in allowed_moves(current, held_from):
        allowed = sorted(allowed_moves(current, held_from))
        raise StatusMoveError(
            f"a return in {current!r} cannot move to {new!r}"
            + (f"; allowed: {allowed}" if allowed else f"; {current!r} is final")
        )


def check_history(history: list[str]) -> None:
    """Raise StatusMoveError (naming the step) unless `history` is a walk the machine allows."""
    if not history:
        raise StatusMoveError("history is empty")
    if history[0] not in ("pending", "in_progress"):
        raise StatusMoveError(
            f"history[0]: a return starts pending or in_progress, not {history[0]!r}"
        )
    held_from: str | None = None
    for i in range(1, len(history)):
        try:
            check_move(history[i - 1], history[i], held_from)
        except StatusMoveError as exc:
            raise StatusMoveError(f"history[{i}]: {exc}") from None
        held_from = history[i - 1] if history[i] == "on_hold" else None
