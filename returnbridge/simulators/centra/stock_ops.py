"""Stock writes of the Integration API: `changeStock` (deltas) and `setStock` (absolute) ([C]).

changeStock: `intoWarehouse` adds, `outFromWarehouse` removes, both together move. Taking away
more than a warehouse's free-to-allocate quantity is a userError ([C] for moves, [INF] for plain
removals). There is no dedupe: a repeated call changes stock again.
setStock: PHYSICAL sets the physical quantity; FTA sets free-to-allocate (physical = FTA +
allocated). Both record a StockChange holding the resulting deltas.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from returnbridge.simulators.centra.outcomes import ErrorCollector
from returnbridge.simulators.centra.records import (
    StockChangeLineRec,
    StockChangeRec,
    VariantRec,
)
from returnbridge.simulators.centra.state import CentraState


def change_stock(state: CentraState, inp: Mapping[str, Any]) -> StockChangeRec:
    """Validate a StockChangeInput completely, then apply its deltas as one stock change."""
    errors = ErrorCollector()
    into = _warehouse(state, inp.get("intoWarehouse"), errors, "intoWarehouse")
    out = _warehouse(state, inp.get("outFromWarehouse"), errors, "outFromWarehouse")
    if inp.get("intoWarehouse") is None and inp.get("outFromWarehouse") is None:
        errors.add("Give intoWarehouse, outFromWarehouse or both.", "input")
    if into is not None and into == out:
        # [INF] a move needs two different warehouses
        errors.add("intoWarehouse and outFromWarehouse are the same warehouse.", "input")
    # Without a usable warehouse reference there is nothing to check the lines against.
    warehouses_ok = not errors.errors
    deltas: list[tuple[int, int, int]] = []  # (size id, warehouse id, delta)
    net: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], list[str | int]] = {}
    for i, pv in enumerate(_variants_input(inp, errors)):
        variant = _variant(state, pv, errors, i)
        if not pv["sizeChanges"]:
            errors.add(
                "sizeChanges may not be empty.", "input", "productVariants", i, "sizeChanges"
            )
        for j, change in enumerate(pv["sizeChanges"]):
            path: list[str | int] = ["input", "productVariants", i, "sizeChanges", j]
            size_id = _size(state, variant, change["size"], errors, path)
            qty = change["deliveredQuantity"]
            if qty == 0:
                errors.add("deliveredQuantity may not be 0.", *path, "deliveredQuantity")
            if size_id is None or qty == 0 or not warehouses_ok:
                continue
            if into is not None and out is not None:
                if qty < 0:
                    errors.add("A move needs a positive deliveredQuantity.", *path)
                    continue
                moves = [(size_id, out, -qty), (size_id, into, qty)]
            elif into is not None:
                moves = [(size_id, into, qty)]
            else:
                assert out is not None
                if qty < 0:
                    errors.add("deliveredQuantity must be positive when removing.", *path)
                    continue
                moves = [(size_id, out, -qty)]
            for move in moves:
                deltas.append(move)
                net[(move[0], move[1])] += move[2]
                where.setdefault((move[0], move[1]), path)
    for (size_id, wid), delta in net.items():
        level = state.level(size_id, wid)
        if -delta > level.free_to_allocate:
            errors.add(
                f"Not enough free-to-allocate stock of {state.sizes[size_id].sku} in warehouse "
                f"{wid}: {level.free_to_allocate} free, {-delta} to take.",
                *where[(size_id, wid)],
            )
    errors.raise_if_any()
    primary = into if into is not None else out
    assert primary is not None
    return _record(state, primary, inp.get("description"), deltas, "changeStock")


def set_stock(state: CentraState, inp: Mapping[str, Any]) -> list[StockChangeRec]:
    """Validate a SetStockInput completely, then set absolute levels in one warehouse."""
    errors = ErrorCollector()
    wid = _warehouse(state, inp["warehouse"], errors, "warehouse")
    targets: dict[int, int] = {}
    for i, pv in enumerate(_variants_input(inp, errors)):
        variant = _variant(state, pv, errors, i)
        if not pv["sizeStockLevels"]:
            errors.add(
                "sizeStockLevels may not be empty.",
                "input", "productVariants", i, "sizeStockLevels",
            )  # fmt: skip
        for j, level in enumerate(pv["sizeStockLevels"]):
            path: list[str | int] = ["input", "productVariants", i, "sizeStockLevels", j]
            size_id = _size(state, variant, level["size"], errors, path)
            if level["quantity"] < 0:
                errors.add("quantity may not be negative.", *path, "quantity")
            elif size_id is not None:
                targets[size_id] = level["quantity"]
    errors.raise_if_any()
    assert wid is not None
    physical_type = inp["stockQuantityType"] == "PHYSICAL"
    deltas = []
    for size_id, quantity in targets.items():
        current = state.level(size_id, wid)
        physical = quantity if physical_type else quantity + current.allocated
        if physical < current.allocated:
            # Centra keeps allocations; physical cannot drop below what is allocated. [INF]
            physical = current.allocated
        if physical != current.physical:
            deltas.append((size_id, wid, physical - current.physical))
    return [_record(state, wid, inp.get("description"), deltas, "setStock")]


def _record(
    state: CentraState,
    warehouse_id: int,
    description: str | None,
    deltas: list[tuple[int, int, int]],
    source: str,
) -> StockChangeRec:
    lines = []
    for size_id, wid, delta in deltas:
        state.level(size_id, wid).physical += delta
        lines.append(StockChangeLineRec(state.ids.next("stock_change_line"), size_id, wid, delta))
    change = StockChangeRec(
        id=state.ids.next("stock_change"),
        created_at=state.clock.now(),
        description=description,
        warehouse_id=warehouse_id,
        lines=lines,
        source=source,
    )
    state.stock_changes[change.id] = change
    for product_id in sorted({state.sizes[line.size_id].product_id for line in lines}):
        state.emit("product", "update", product_id)
    return change


def _variants_input(inp: Mapping[str, Any], errors: ErrorCollector) -> list[Mapping[str, Any]]:
    variants: list[Mapping[str, Any]] = inp["productVariants"]
    if not variants:
        errors.add("productVariants may not be empty.", "input", "productVariants")
    return variants


def _warehouse(
    state: CentraState, ref: Mapping[str, Any] | None, errors: ErrorCollector, key: str
) -> int | None:
    if ref is None:
        return None
    if ref["id"] not in state.warehouses:
        errors.add(f"Warehouse {ref['id']} not found.", "input", key, "id")
        return None
    wid: int = ref["id"]
    return wid


def _variant(
    state: CentraState, pv: Mapping[str, Any], errors: ErrorCollector, i: int
) -> VariantRec | None:
    variant = state.variants.get(pv["productVariant"]["id"])
    if variant is None:
        errors.add(
            f"Product variant {pv['productVariant']['id']} not found.",
            "input", "productVariants", i, "productVariant", "id",
        )  # fmt: skip
    return variant


def _size(
    state: CentraState,
    variant: VariantRec | None,
    ref: Mapping[str, Any],
    errors: ErrorCollector,
    path: list[str | int],
) -> int | None:
    """A size of `variant` by `{id}` (ProductSize id [INF]) or `{name}` (size name)."""
    if variant is None:
        return None
    size_id, name = ref.get("id"), ref.get("name")
    if (size_id is None) == (name is None):
        errors.add("Give the size by exactly one of id or name.", *path, "size")
        return None
    for candidate in variant.size_ids:
        size = state.sizes[candidate]
        if size.id == size_id or (name is not None and size.name == name):
            return size.id
    shown = size_id if size_id is not None else repr(name)
    errors.add(f"Size {shown} is not a size of product variant {variant.id}.", *path, "size")
    return None
