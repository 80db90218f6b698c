"""Which shipment lines a Reveni return's accepted units go back on (step 2 of
docs/architecture.md#the-life-of-a-return).

Centra's `createReturn` takes one shipment and names shipment lines, while Reveni only knows SKUs
and units. This module turns accepted units per item into *return parts*: one Centra return per
shipment, each with its shipment lines. It is pure and deterministic, and it is stable: once a
part exists anywhere (a Centra return whose `externalId` is the Reveni return id, or a ledger row
of a `create_return` action in any state), that part is kept exactly as it is and only units that
no part holds yet are placed. Re-planning therefore never moves a unit to another shipment, and
never changes a part's ledger key, after the first plan.

A *mixed* return (`is_mixed`: some items exchanged, some refunded) has two roles, and its
exchanged and refunded units never share a part, because Centra credits a return for all of its
lines. A part is then one (shipment, role): a mixed return can have a refund part and an exchange
part on one shipment, told apart in Centra (and in the ledger's payload) by the comment
(`actions.is_exchange_part`). A plain return has one role: at most one part per shipment.

Placement of new units, per item in the return's item order:

- only shipments marked shipped, and shipment lines whose order line has the item's SKU;
- capacity of a shipment line = shipped - every Centra return line on it (any `externalId`) - the
  lines of parts only the ledger knows so far (planned, in flight, failed...: they will or may
  still reach Centra);
- lines whose order-line unit price equals the item's `unit_price` first (the same SKU on two
  lines at different prices: Centra's credit then matches what Reveni priced), then the earliest
  shipment (`created_at`, id), then the shipment line id;
- shipments that already hold a part of this return in the item's role are skipped, so one
  shipment never gets two parts of one role (their keys would collide);
- all or nothing: a return whose units cannot all be placed gets no new part and consumes nothing,
  so one bad return does not starve the next (it becomes `quantity_exceeds_shipped`).

Returns of one order are placed in (created_at, id) order, like validation claims them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from returnbridge.connectors.centra.models import Order, OrderLine
from returnbridge.connectors.centra.models import Return as CentraReturn
from returnbridge.connectors.reveni.models import Return as ReveniReturn
from returnbridge.connectors.reveni.models import ReturnItem
from returnbridge.core.actions import CreateReturn, ReturnLinePlan, is_exchange_part, return_key
from returnbridge.ledger.records import ActionRecord


@dataclass(frozen=True)
class ReturnPart:
    """One Centra return (one shipment, one role) of a Reveni return, under its ledger key."""

    key: str
    shipment_id: int
    lines: tuple[ReturnLinePlan, ...]
    # The Centra return that is this part, when Centra shows one (externalId == rid).
    centra_return: CentraReturn | None = None
    # True when no ledger row and no Centra return exists yet: placed by this plan.
    new: bool = False
    # The exchanged items of a mixed return: created, restocked, never credited.
    exchange: bool = False

    @property
    def slot(self) -> tuple[int, bool]:
        """What makes a part unique within its return: (shipment, role)."""
        return self.shipment_id, self.exchange

    def units(self) -> Counter[str]:
        """Units per SKU this part returns."""
        counts: Counter[str] = Counter()
        for line in self.lines:
            counts[line.sku] += line.quantity
        return counts


@dataclass(frozen=True)
class ShipmentMapping:
    """Where one Reveni return's accepted units are, or would go."""

    parts: tuple[ReturnPart, ...] = ()
    # Units per SKU that could not be placed (then no part is new: all or nothing).
    unplaced: Mapping[str, int] = field(default_factory=dict)
    # Per item index (in `return_items`), the key of the part holding its first unit.
    holding: Mapping[int, str] = field(default_factory=dict)
    # The ledger has a part without a readable payload that Centra does not show (yet): where
    # it is is unknown, so nothing new is placed until Centra shows it.
    unresolved: tuple[str, ...] = ()


@dataclass
class _Slot:
    """A shipment line with room left, and what ordering and pricing it needs."""

    shipment_id: int
    order: tuple[object, ...]
    shipment_line_id: int
    order_line: OrderLine
    room: int


def is_mixed(ret: ReveniReturn) -> bool:
    """Whether `ret` exchanges some items and refunds others: then its exchanged and refunded
    items go into separate Centra returns. Decided on the items as requested, accepted or not, so
    it never changes once the return exists."""
    roles = {item.exchange is not None for item in ret.return_items}
    return len(roles) == 2


def item_is_exchange(ret: ReveniReturn, item: ReturnItem) -> bool:
    """The role of `item`'s units: True for the exchange part(s) of a mixed return."""
    return item.exchange is not None and is_mixed(ret)


def own_centra_returns(history_returns: Sequence[CentraReturn], rid: str) -> list[CentraReturn]:
    """The Centra returns that are this Reveni return's own (externalId == rid), oldest first."""
    return sorted((r for r in history_returns if r.external_id == rid), key=lambda r: r.id)


def ledger_parts(
    ledger: Mapping[str, ActionRecord], rid: str, *, mixed: bool = False
) -> tuple[dict[tuple[int, bool], tuple[str, CreateReturn]], tuple[str, ...]]:
    """The `create_return` rows the ledger holds for `rid` (any state) by (shipment id, role),
    and the keys of rows without a readable payload (an effect the sync adopted from Centra).
    The role is read from the payload's comment, as from a Centra return's, and only when the
    return is `mixed`."""
    found: dict[tuple[int, bool], tuple[str, CreateReturn]] = {}
    unreadable: list[str] = []
    for key in sorted(ledger):
        record = ledger[key]
        if record.kind != "create_return" or record.reveni_return_id != rid:
            continue
        try:
            payload = record.action().payload
        except (KeyError, TypeError, ValueError):
            unreadable.append(key)
            continue
        assert isinstance(payload, CreateReturn)  # guaranteed by Action for this kind
        role = mixed and is_exchange_part(rid, payload.comment)
        found.setdefault((payload.shipment_id, role), (key, payload))
    return found, tuple(unreadable)


def accepted_demand(ret: ReveniReturn) -> list[tuple[int, ReturnItem, int]]:
    """(item index, item, accepted units) of every item with accepted units, in item order."""
    return [(i, item, item.accepted_units) for i, item in enumerate(ret.return_items)]


def map_to_shipment_lines(
    order: Order,
    centra_returns: Sequence[CentraReturn],
    returns: Sequence[ReveniReturn],
    ledger: Mapping[str, ActionRecord],
    placing: frozenset[str],
) -> dict[str, ShipmentMapping]:
    """The return parts of every return of one order.

    `returns`: every Reveni return of the order being planned (their existing parts reserve room
    whatever their status); `placing`: the ids of those whose accepted units are to be placed
    now (valid and accepted). Returns without existing parts and not placing get an empty map.
    """
    slots = _slots(order, centra_returns)
    existing = {ret.id: _existing_parts(ret, centra_returns, ledger) for ret in returns}
    for found in existing.values():
        for part in found.parts:
            if part.centra_return is None:  # a ledger-only part: it will or may reach Centra
                for line in part.lines:
                    if line.shipment_line_id in slots:
                        slots[line.shipment_line_id].room -= line.quantity
    result: dict[str, ShipmentMapping] = {}
    for ret in sorted(returns, key=lambda r: (r.created_at, r.id)):
        found = existing[ret.id]
        parts = _keyed(ret.id, found.parts, [])
        unresolved = tuple(k for k in found.unreadable if k not in {p.key for p in parts})
        if ret.id not in placing or unresolved:
            result[ret.id] = ShipmentMapping(parts=parts, unresolved=unresolved)
            continue
        result[ret.id] = _place(ret, found, slots)
    return result


def _slots(order: Order, centra_returns: Sequence[CentraReturn]) -> dict[int, _Slot]:
    """Every shipped shipment line with its room after all Centra returns."""
    returned: Counter[int] = Counter()
    for centra_return in centra_returns:
        for line in centra_return.lines:
            returned[line.shipment_line_id] += line.quantity
    slots: dict[int, _Slot] = {}
    for shipment in order.shipments:
        if not shipment.is_shipped:
            continue
        for sline in shipment.lines:
            order_line = order.line(sline.order_line_id)
            if order_line is None:
                continue
            slots[sline.id] = _Slot(
                shipment_id=shipment.id,
                order=(shipment.created_at, shipment.id, sline.id),
                shipment_line_id=sline.id,
                order_line=order_line,
                room=sline.quantity - returned[sline.id],
            )
    return slots


@dataclass(frozen=True)
class _Existing:
    """What already exists of one return's parts, before anything new is placed."""

    parts: list[ReturnPart]
    # Units per role of further own Centra returns on a (shipment, role) that already has one:
    # they count as placed (nothing more is created for them) but are not a part of their own.
    extra: dict[bool, Counter[str]]
    unreadable: tuple[str, ...]  # ledger keys of parts without a readable payload


def _existing_parts(
    ret: ReveniReturn, centra_returns: Sequence[CentraReturn], ledger: Mapping[str, ActionRecord]
) -> _Existing:
    """Parts that already exist for `ret`: Centra's first (it is the truth), then the ledger's.
    Of a mixed return, a part's role is read from its comment (`actions.is_exchange_part`)."""
    rid, mixed = ret.id, is_mixed(ret)
    from_ledger, unreadable = ledger_parts(ledger, rid, mixed=mixed)
    parts: dict[tuple[int, bool], ReturnPart] = {}
    extra: dict[bool, Counter[str]] = {False: Counter(), True: Counter()}
    for centra_return in own_centra_returns(centra_returns, rid):
        slot = (centra_return.shipment_id, mixed and is_exchange_part(rid, centra_return.comment))
        if slot in parts:
            for line in centra_return.lines:
                extra[slot[1]][line.sku] += line.quantity
            continue
        if slot in from_ledger:
            key = from_ledger[slot][0]
        else:
            key = _adopted_key(rid, slot, unreadable)
            key = "" if key in {p.key for p in parts.values()} else key
        lines = tuple(
            ReturnLinePlan(
                shipment_line_id=line.shipment_line_id, quantity=line.quantity, sku=line.sku
            )
            for line in sorted(centra_return.lines, key=lambda ln: ln.shipment_line_id)
        )
        parts[slot] = ReturnPart(
            key=key,
            shipment_id=slot[0],
            lines=lines,
            centra_return=centra_return,
            exchange=slot[1],
        )
    for slot, (key, payload) in from_ledger.items():
        if slot not in parts:
            parts[slot] = ReturnPart(
                key=key, shipment_id=slot[0], lines=payload.lines, exchange=slot[1]
            )
    return _Existing([parts[slot] for slot in sorted(parts)], extra, unreadable)


def _adopted_key(rid: str, slot: tuple[int, bool], unreadable: tuple[str, ...]) -> str:
    """The payload-less ledger key (an adopted effect) that names `slot`, else "".

    Its key says where it is: `return:{rid}:{shipment}[:exchange]`, or `return:{rid}` when it was
    the return's only part. Matched by key, not re-derived from the parts present now: after a
    lost ledger row the return may show fewer parts than when the key was given, and a re-derived
    key would leave the adopted one unmatched, waiting for ever."""
    exact = return_key(rid, slot[0], exchange=slot[1])
    if exact in unreadable:
        return exact
    return return_key(rid) if return_key(rid) in unreadable else ""


def _place(ret: ReveniReturn, found: _Existing, slots: dict[int, _Slot]) -> ShipmentMapping:
    """Place the accepted units no existing part holds yet (all or nothing), each in its role.

    Units an existing part holds count as placed: first a part of the item's own role, then,
    for what is left, one of the other role (a Centra return made before mixed returns were
    split holds both; returning its units a second time would be worse than crediting it
    wrongly, which the refund's comparison with Centra's credit catches)."""
    parts = found.parts
    held = {role: counts.copy() for role, counts in found.extra.items()}
    for part in parts:
        held[part.exchange].update(part.units())
    demand = [(i, item, item_is_exchange(ret, item), n) for i, item, n in accepted_demand(ret)]
    needs = {index: units for index, _, _, units in demand}
    for own in (True, False):  # each role's own parts first, then the other role's leftovers
        for index, item, role, _ in demand:
            source = held[role if own else not role]
            covered = min(needs[index], source[item.sku])
            source[item.sku] -= covered
            needs[index] -= covered
    taken = {role: {p.shipment_id for p in parts if p.exchange == role} for role in (False, True)}
    trial = {sline_id: slot.room for sline_id, slot in slots.items()}
    # (shipment, role) -> shipment line -> units
    new_lines: dict[tuple[int, bool], Counter[int]] = defaultdict(Counter)
    unplaced: Counter[str] = Counter()
    first_new_slot: dict[int, tuple[int, bool]] = {}  # item index -> part of its first new unit
    for index, item, role, _ in demand:
        need = needs[index]
        for slot in _candidates(item, slots, taken[role]):
            if need == 0:
                break
            take = min(need, trial[slot.shipment_line_id])
            if take <= 0:
                continue
            trial[slot.shipment_line_id] -= take
            new_lines[slot.shipment_id, role][slot.shipment_line_id] += take
            first_new_slot.setdefault(index, (slot.shipment_id, role))
            need -= take
        if need:
            unplaced[item.sku] += need
    if unplaced:
        return ShipmentMapping(
            parts=_keyed(ret.id, parts, []), unplaced=dict(sorted(unplaced.items()))
        )
    for sline_id, room in trial.items():
        slots[sline_id].room = room
    sku_of = {sline_id: slot.order_line.sku for sline_id, slot in slots.items()}
    fresh = [
        ReturnPart(
            key="",
            shipment_id=sid,
            lines=tuple(
                ReturnLinePlan(shipment_line_id=sl, quantity=q, sku=sku_of[sl])
                for sl, q in sorted(lines.items())
            ),
            new=True,
            exchange=role,
        )
        for (sid, role), lines in new_lines.items()
    ]
    keyed = _keyed(ret.id, parts, fresh)
    return ShipmentMapping(parts=keyed, holding=_holding(ret, keyed, first_new_slot))


def _candidates(item: ReturnItem, slots: Mapping[int, _Slot], skip: set[int]) -> list[_Slot]:
    """Shipment lines that may take `item`, best first (price match, then earliest)."""
    matching = [
        slot
        for slot in slots.values()
        if slot.order_line.sku == item.sku and slot.shipment_id not in skip and slot.room > 0
    ]

    def rank(slot: _Slot) -> tuple[object, ...]:
        price_differs = (
            item.unit_price is not None and slot.order_line.unit_price.value != item.unit_price
        )
        return (price_differs, *slot.order)

    return sorted(matching, key=rank)


def _keyed(rid: str, existing: list[ReturnPart], fresh: list[ReturnPart]) -> tuple[ReturnPart, ...]:
    """All parts with their ledger keys, in (shipment, role) order: a refund part before the
    exchange part on one shipment.

    A part the ledger holds keeps its key. Any other gets the design's key `return:{rid}` when it
    is the return's only part, else `return:{rid}:{shipment_id}`, `...:exchange` for an exchange
    part (actions.py)."""
    everything = sorted([*existing, *fresh], key=lambda p: p.slot)
    single = len(everything) == 1
    return tuple(
        part
        if part.key
        else replace(
            part,
            key=return_key(rid)
            if single
            else return_key(rid, part.shipment_id, exchange=part.exchange),
        )
        for part in everything
    )


def _holding(
    ret: ReveniReturn, parts: tuple[ReturnPart, ...], first_new: Mapping[int, tuple[int, bool]]
) -> dict[int, str]:
    """The part that holds each accepted item: where its first new unit went, else the first
    part (in shipment order) of the item's role returning its SKU, else of any role."""
    key_of_slot = {part.slot: part.key for part in parts}
    holding: dict[int, str] = {}
    for index, item in enumerate(ret.return_items):
        if item.accepted_units == 0:
            continue
        if index in first_new:
            holding[index] = key_of_slot[first_new[index]]
            continue
        role = item_is_exchange(ret, item)
        with_sku = [p for p in parts if any(ln.sku == item.sku for ln in p.lines)]
        part = next((p for p in with_sku if p.exchange == role), next(iter(with_sku), None))
        if part is not None:
            holding[index] = part.key
    return holding
