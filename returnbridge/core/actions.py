"""The Centra effects returnbridge applies, as plain data
(docs/architecture.md#effects-and-idempotency-keys).

The planner (`core/planner.py`) turns a Reveni return and what Centra and the ledger know into
`Action`s; the ledger (`ledger/`) stores them under their key; the executor (`sync/executor.py`)
sends each to Centra exactly once. Every effect has one ledger key; an action is one Centra
mutation, so "one effect per key" is checkable against the simulator's ground truth.

Keys (two details explain the longer forms. Centra's `createReturn` takes *one* shipment, so a
return whose accepted items were shipped in several shipments needs one Centra return per
shipment. And Centra computes a return's credit from *all* its lines, so a mixed Reveni return
(some items refunded, some exchanged) keeps its refunded and its exchanged items in separate
Centra returns: the refund is posted, and compared with Centra's computed credit, on the refund
part(s) only; the exchange part(s) bring the items back but are never credited. The common case,
a return with one part, keeps the short key. `return_key` and `refund_key` are the only
places these keys are built; a part the ledger already holds keeps its key whatever the scheme):

| effect | key | when |
|---|---|---|
| create return (`createReturn`) | `return:{rid}` | the return has exactly one part |
| | `return:{rid}:{shipment_id}` | one of several parts; in a mixed return: a refund part |
| | `return:{rid}:{shipment_id}:exchange` | an exchange part of a mixed return, of several |
| restock (`changeStock`) | `restock:{rid}` | all restock lines of the return, one change |
| refund / credit (`PUT /returns/{id}`) | `refund:{rid}:{refund_id}` | one credited part |
| | `refund:{rid}:{refund_id}:{shipment_id}` | one of several credited (refund) parts |
| exchange order (`POST /order`) | `exchange:{rid}:{n}` | deterministic order number |

A return is *mixed* when its items (accepted or not, so the split never changes after the
request) include both exchanged and refunded items; only then are parts split by role. A plain
refund or plain exchange return has one role, exactly as before the split. Every part's Centra
return has `externalId` = `rid`; an exchange part of a mixed return is told apart from a refund
part on the same shipment by its comment (`EXCHANGE_PART_COMMENT`, `is_exchange_part`), which is
also what the `create_return` read-back matches on.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal, get_args

ActionKind = Literal["create_return", "restock", "refund", "exchange_order"]
ACTION_KINDS: Final[tuple[str, ...]] = get_args(ActionKind)

ActionState = Literal["pending", "in_flight", "done", "failed", "in_doubt", "blocked"]
ACTION_STATES: Final[tuple[str, ...]] = get_args(ActionState)
# Still owed to Centra: the executor picks these up (in_flight / in_doubt after a crash or a
# timeout are resolved by reading Centra back first, never by sending again).
UNSETTLED: Final = frozenset({"pending", "in_flight", "in_doubt"})
SETTLED: Final = frozenset({"done", "failed", "blocked"})
# Allowed moves of the state machine; `failed -> pending` and `blocked -> pending` are the
# retries (transient retry, `exceptions retry`, reconciliation), `in_doubt -> done|pending`
# the read-back outcome.
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"in_flight", "blocked"}),
    "in_flight": frozenset({"done", "failed", "in_doubt", "pending", "blocked"}),
    # in_flight again: a worker re-claims it to read Centra back (not to resend)
    "in_doubt": frozenset({"in_flight", "done", "pending", "failed", "blocked"}),
    "failed": frozenset({"pending"}),
    "blocked": frozenset({"pending"}),
    # in_doubt again: reconciliation found the effect missing in Centra (read back, never resent
    # blindly)
    "done": frozenset({"in_doubt"}),
}

# The restock change's description is the read-back key: exact match, one per return.
RESTOCK_DESCRIPTION = "returnbridge restock {rid}"


class ActionStateError(ValueError):
    """A state move the action state machine does not allow."""


def check_transition(current: str, new: str) -> None:
    """Raise ActionStateError unless `current -> new` is an allowed move."""
    if new not in TRANSITIONS.get(current, frozenset()):
        raise ActionStateError(f"action state {current!r} cannot move to {new!r}")


# The comment of a Centra return returnbridge creates: a plain part, and the exchange part of a
# mixed return (no credit is ever posted on it). Part of the read-back key of `create_return`.
RETURN_COMMENT = "Reveni return {rid}"
EXCHANGE_PART_COMMENT = "Reveni return {rid}: exchanged items, no refund"


def return_comment(rid: str, *, exchange: bool = False) -> str:
    """The comment of a part of Reveni return `rid` (`exchange`: an exchange part of a mixed
    return)."""
    return (EXCHANGE_PART_COMMENT if exchange else RETURN_COMMENT).format(rid=rid)


def is_exchange_part(rid: str, comment: str | None) -> bool:
    """Whether a Centra return of `rid` with this comment is the exchange part of a mixed return
    (anything else, an empty comment included, is a refund or plain part)."""
    return comment is not None and comment.strip() == return_comment(rid, exchange=True)


def return_key(rid: str, shipment_id: int | None = None, *, exchange: bool = False) -> str:
    """`return:{rid}` (the only part), else `return:{rid}:{shipment_id}`, with `:exchange` for an
    exchange part of a mixed return."""
    if shipment_id is None:
        return f"return:{rid}"
    return f"return:{rid}:{shipment_id}" + (":exchange" if exchange else "")


def restock_key(rid: str) -> str:
    return f"restock:{rid}"


def refund_key(rid: str, refund_id: str, shipment_id: int | None = None) -> str:
    base = f"refund:{rid}:{refund_id}"
    return base if shipment_id is None else f"{base}:{shipment_id}"


def exchange_key(rid: str, n: int) -> str:
    return f"exchange:{rid}:{n}"


def exchange_order_number(rid: str, n: int, base: int = 900_000_000, attempt: int = 0) -> int:
    """The deterministic Centra order number of exchange `n` of return `rid` (`attempt` > 0:
    the next candidates, when another return's exchange order already has the number).

    Deterministic so that a resend after a crash hits Centra's duplicate check (-5) instead of
    creating a second order; `base` keeps it clear of the brand's own numbering (configurable).
    The numbers of two exchanges can collide (90 million of them: about one pair in 10,000
    exchanges), so the order carries `exchange_marker` and a taken number is never adopted
    unless the order there is marked as this exchange's.
    """
    seed = f"{rid}:{n}" if attempt == 0 else f"{rid}:{n}:{attempt}"
    digest = hashlib.sha256(seed.encode()).digest()
    return base + int.from_bytes(digest[:8], "big") % 90_000_000


# Candidates tried in order for one exchange order (a collision of all four: about 1e-25).
EXCHANGE_NUMBER_CANDIDATES: Final = 4


def exchange_order_numbers(rid: str, n: int, base: int = 900_000_000) -> tuple[int, ...]:
    """Every candidate number of exchange `n` of `rid`, in the order they are tried."""
    attempts = range(EXCHANGE_NUMBER_CANDIDATES)
    return tuple(exchange_order_number(rid, n, base, attempt) for attempt in attempts)


# What marks an exchange order as returnbridge's, for which exchange (its internal comment).
EXCHANGE_MARKER: Final = "returnbridge exchange {rid}:{n}"


def exchange_marker(rid: str, n: int) -> str:
    return EXCHANGE_MARKER.format(rid=rid, n=n)


def exchange_of(comment: str | None) -> str | None:
    """`"{rid}:{n}"` of the exchange an order's internal comment marks, or None."""
    prefix = EXCHANGE_MARKER.partition("{rid}")[0]
    if comment is None or not comment.startswith(prefix):
        return None
    rest = comment[len(prefix) :].strip()
    rid, sep, n = rest.rpartition(":")
    return rest if sep and rid and n.isdigit() else None


@dataclass(frozen=True)
class ReturnLinePlan:
    """One line of a Centra return: which shipment line, how many, of which SKU."""

    shipment_line_id: int
    quantity: int
    sku: str


@dataclass(frozen=True)
class CreateReturn:
    """`createReturn` on one shipment, `externalId` = Reveni return id, stock untouched."""

    shipment_id: int
    lines: tuple[ReturnLinePlan, ...]
    external_id: str
    comment: str = ""


@dataclass(frozen=True)
class RestockLine:
    sku: str
    variant_id: int
    size_id: int
    quantity: int


@dataclass(frozen=True)
class Restock:
    """One `changeStock` into the returns warehouse; `description` is the read-back key."""

    description: str
    warehouse_id: int
    lines: tuple[RestockLine, ...]


@dataclass(frozen=True)
class Refund:
    """`PUT /returns/{centra_return_id}`: complete the return and post the credit.

    `via_psp`: Centra refunds through its PSP (`refundPayment: true`; original payment method
    only, and only when Centra's computed amount equals `amount`). Otherwise the return is
    completed with a non-PSP refund record of `amount` and `reference` (Reveni paid the
    customer: instant bank transfer or store credit)."""

    centra_return_id: int
    via_psp: bool
    amount: Decimal
    currency: str
    reference: str


@dataclass(frozen=True)
class ExchangeLine:
    sku: str
    quantity: int


@dataclass(frozen=True)
class ExchangeOrder:
    """`POST /order`: a zero-value internal order for the replacement items.

    `order_number` is tried first, then `alternates` when another exchange's order holds it
    (only an order marked `marker` is this one). Actions planned before markers existed have
    none: any order under `order_number` is taken as theirs."""

    order_number: int
    origin_order_number: int
    origin_return_id: int
    lines: tuple[ExchangeLine, ...]
    marker: str | None = None
    alternates: tuple[int, ...] = ()

    def candidates(self) -> tuple[int, ...]:
        return (self.order_number, *self.alternates)

    def is_ours(self, internal_comment: str | None) -> bool:
        """Whether an existing order with this comment is this exchange's order."""
        return self.marker is None or internal_comment == self.marker


Payload = CreateReturn | Restock | Refund | ExchangeOrder
_PAYLOAD_OF_KIND: Final[dict[str, type[Any]]] = {
    "create_return": CreateReturn,
    "restock": Restock,
    "refund": Refund,
    "exchange_order": ExchangeOrder,
}


@dataclass(frozen=True)
class Action:
    """One Centra effect owed for a Reveni return, under its ledger key."""

    key: str
    kind: ActionKind
    reveni_return_id: str
    order_number: int
    payload: Payload
    # Keys that must be `done` before this one may run (the planner only emits an action once
    # its prerequisites are done; the executor checks again).
    depends_on: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        expected = _PAYLOAD_OF_KIND.get(self.kind)
        if expected is None or not isinstance(self.payload, expected):
            raise TypeError(f"action {self.key}: kind {self.kind!r} with {type(self.payload)}")

    def payload_json(self) -> dict[str, Any]:
        """The payload as JSON-ready data (Decimal as string) for the ledger."""
        return _jsonable(asdict(self.payload))

    @classmethod
    def from_stored(
        cls,
        *,
        key: str,
        kind: str,
        reveni_return_id: str,
        order_number: int,
        payload: dict[str, Any],
        depends_on: tuple[str, ...] = (),
    ) -> Action:
        """Rebuild an action from its ledger row."""
        if kind not in _PAYLOAD_OF_KIND:
            raise ValueError(f"action {key}: unknown kind {kind!r}")
        return cls(
            key=key,
            kind=kind,  # type: ignore[arg-type]
            reveni_return_id=reveni_return_id,
            order_number=order_number,
            payload=_payload_from_json(kind, payload),
            depends_on=depends_on,
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _payload_from_json(kind: str, data: dict[str, Any]) -> Payload:
    if kind == "create_return":
        return CreateReturn(
            shipment_id=int(data["shipment_id"]),
            lines=tuple(ReturnLinePlan(**line) for line in data["lines"]),
            external_id=data["external_id"],
            comment=data.get("comment", ""),
        )
    if kind == "restock":
        return Restock(
            description=data["description"],
            warehouse_id=int(data["warehouse_id"]),
            lines=tuple(RestockLine(**line) for line in data["lines"]),
        )
    if kind == "refund":
        return Refund(
            centra_return_id=int(data["centra_return_id"]),
            via_psp=bool(data["via_psp"]),
            amount=Decimal(data["amount"]),
            currency=data["currency"],
            reference=data["reference"],
        )
    return ExchangeOrder(
        order_number=int(data["order_number"]),
        origin_order_number=int(data["origin_order_number"]),
        origin_return_id=int(data["origin_return_id"]),
        lines=tuple(ExchangeLine(**line) for line in data["lines"]),
        marker=data.get("marker"),
        alternates=tuple(int(n) for n in data.get("alternates", ())),
    )
