"""Generated scenarios: many seeded, realistic orders and returns on top of a base scenario.

`generate_scenario(n, seed=S, base=showcase)` keeps every order, product and return of `base`
(their ids too) and adds `n` Reveni returns on new Centra orders, in the mix a busy brand sees:

| case     | share | what it is                                                            |
|----------|-------|-----------------------------------------------------------------------|
| `std`    | 30 %  | standard refund to the original payment method, accepted              |
| `sc`     |  8 %  | store credit (issued by the shop), accepted                           |
| `inst`   | 10 %  | instant bank transfer (paid by Reveni at once), accepted              |
| `instsc` |  3 %  | instant store credit, accepted                                        |
| `exch`   |  9 %  | exchange into another size that is in stock                           |
| `exoos`  |  2 %  | exchange into a size with no stock (`exchange_out_of_stock`)          |
| `mix`    |  6 %  | one item exchanged, the others refunded                               |
| `pacc`   |  7 %  | partially accepted: some items rejected at inspection                 |
| `rej`    |  5 %  | rejected (an instant one is covered by Reveni)                        |
| `canc`   |  4 %  | cancelled by the shopper before sending                               |
| `exp`    |  1 %  | expired                                                               |
| `open`   |  6 %  | not inspected yet (requested, shipped, received or for review)        |
| `mism`   |  1 %  | Reveni refunds less than Centra computes (`refund_amount_mismatch`)   |
| `two`    |  7 %  | a second return on an order that already has one                      |

Across cases: one to four lines per order, some with two units; about one multi-line order in
eight ships in two shipments; a few orders carry the same SKU on two lines (at one price, so
the amount never depends on which line a unit goes back on); SEK (Sweden) and EUR (Germany,
France, Netherlands); restock true for most items, false for some; some histories pass
`pending`, `for_review` or an `on_hold` detour, and about a third of the accepted returns go on
to `completed`. Every history is a walk the status machine allows, every `created_at` is before
`now`, and instant returns that are not inspected yet are recent (no `instant_deadline_near`).

Refund amounts equal what the Centra simulator computes for the accepted refund items (order
line unit price x units; prices include tax), except in `mism`. Generated SKUs start with `G-`
and carry stock for every exchange, except the sizes kept sold out for `exoos`.

The same seed, base and `now` always give the same scenario. `scenario_to_yaml` writes it as a
scenario file that `returnbridge sim centra --scenario` and `sim reveni --scenario` both load.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import yaml

from returnbridge.scenario import Scenario

CASES: Final[tuple[tuple[str, int], ...]] = (
    ("std", 30),
    ("sc", 8),
    ("inst", 10),
    ("instsc", 3),
    ("exch", 9),
    ("exoos", 2),
    ("mix", 6),
    ("pacc", 7),
    ("rej", 5),
    ("canc", 4),
    ("exp", 1),
    ("open", 6),
    ("mism", 1),
    ("two", 7),
)
CASE_NAMES: Final = tuple(name for name, _ in CASES)
FIRST_ORDER_NUMBER: Final = 200_001
SKU_PREFIX: Final = "G-"

# (currency, market, tax percent, share)
_MARKETS: Final = (
    ("SEK", "SE", 25, 40),
    ("EUR", "DE", 19, 25),
    ("EUR", "FR", 20, 20),
    ("EUR", "NL", 21, 15),
)
_SHIPPING: Final = {"SEK": Decimal("49.00"), "EUR": Decimal("4.95")}
_GOODWILL: Final = {"SEK": Decimal("10.00"), "EUR": Decimal("1.00")}  # `mism`: refunded less


@dataclass(frozen=True)
class _Style:
    """One garment: its size SKUs, price per currency, and the size kept sold out (if any)."""

    code: str
    sizes: tuple[str, ...]
    sek: Decimal
    eur: Decimal
    sold_out: str | None = None

    def sku(self, size: str) -> str:
        return f"{SKU_PREFIX}{self.code}-{size}"

    def in_stock(self) -> list[str]:
        return [self.sku(s) for s in self.sizes if s != self.sold_out]

    def price(self, currency: str) -> Decimal:
        return self.sek if currency == "SEK" else self.eur


_LETTERS: Final = ("XS", "S", "M", "L", "XL")
_STYLES: Final = (
    _Style("TEE-WHT", _LETTERS, Decimal("249.00"), Decimal("24.95"), sold_out="XS"),
    _Style("TEE-NVY", _LETTERS, Decimal("249.00"), Decimal("24.95")),
    _Style("SHIRT-OXF", _LETTERS, Decimal("699.00"), Decimal("69.00"), sold_out="XL"),
    _Style("KNIT-GRY", _LETTERS, Decimal("899.00"), Decimal("89.00")),
    _Style("HOODIE-BLK", _LETTERS, Decimal("799.00"), Decimal("79.95"), sold_out="XS"),
    _Style(
        "JEANS-IND",
        ("28", "30", "32", "34", "36"),
        Decimal("999.00"),
        Decimal("99.00"),
        sold_out="36",
    ),
    _Style("CHINO-SND", ("28", "30", "32", "34"), Decimal("799.00"), Decimal("79.00")),
    _Style(
        "DRESS-BLU",
        ("34", "36", "38", "40", "42"),
        Decimal("1199.00"),
        Decimal("119.00"),
        sold_out="42",
    ),
    _Style("SKIRT-PLT", ("34", "36", "38", "40"), Decimal("599.00"), Decimal("59.95")),
    _Style("JACKET-OLV", ("S", "M", "L"), Decimal("1999.00"), Decimal("199.00"), sold_out="L"),
    _Style(
        "SNEAKER-WHT",
        ("38", "39", "40", "41", "42", "43", "44"),
        Decimal("1299.00"),
        Decimal("129.00"),
    ),
    _Style("SOCKS-5PK", ("ONE",), Decimal("149.00"), Decimal("14.95")),
    _Style("CAP-BLK", ("ONE",), Decimal("299.00"), Decimal("29.95")),
    _Style("BELT-BRN", ("S", "M", "L"), Decimal("449.00"), Decimal("44.95")),
)
_REASONS: Final = ("too_small", "too_big", "changed_mind", "quality", "colour", "other")


def generate_scenario(
    n_returns: int,
    *,
    seed: int,
    base: Scenario | None = None,
    now: datetime | None = None,
) -> Scenario:
    """`base` (default: an empty scenario) plus `n_returns` generated returns on new orders.

    Deterministic: the same arguments give the same scenario. `now` (default: the base's start
    time) becomes the scenario's `now`; every generated timestamp is before it."""
    if n_returns < 0:
        raise ValueError(f"n_returns must be 0 or more, got {n_returns}")
    base = base or Scenario()
    at = (now or base.start_time()).replace(microsecond=0)
    data = base.model_dump(mode="python", exclude_none=True)
    data["now"] = at
    builder = _Builder(random.Random(seed), at, data)
    builder.build(n_returns)
    return Scenario.model_validate(data)


def scenario_to_yaml(scenario: Scenario) -> str:
    """`scenario` as a scenario file that loads back to an equal Scenario."""
    data = scenario.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    for product in data.get("centra", {}).get("products", []):
        if "stock" in product:  # JSON made the warehouse ids strings; the file format has ints
            product["stock"] = {int(k): v for k, v in product["stock"].items()}
    dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, width=100))


# ------------------------------------------------------------------------------------ building


@dataclass
class _Line:
    sku: str
    quantity: int
    price: Decimal
    style: _Style


class _Builder:
    """Appends generated products, orders and returns to the scenario data `data`."""

    def __init__(self, rng: random.Random, now: datetime, data: dict[str, Any]) -> None:
        self.rng = rng
        self.now = now
        self.centra = data.setdefault("centra", {})
        self.reveni = data.setdefault("reveni", {})
        self.products: list[dict[str, Any]] = self.centra.setdefault("products", [])
        self.orders: list[dict[str, Any]] = self.centra.setdefault("orders", [])
        self.returns: list[dict[str, Any]] = self.reveni.setdefault("returns", [])
        warehouses = self.centra.get("warehouses") or [{"id": 1}, {"id": 2}]
        returns_wh = self.centra.get("returns_warehouse", 2)
        self.main_warehouse = next(
            (w["id"] for w in warehouses if w["id"] != returns_wh), returns_wh
        )
        taken = {o["number"] for o in self.orders} | {r["order_number"] for r in self.returns}
        self.taken_numbers = taken
        self.next_number = max([FIRST_ORDER_NUMBER - 1, *taken]) + 1
        self.ids = {r["id"] for r in self.returns if r.get("id")}
        # Returns generated for an order so far, to add a second one (`two`).
        self.reusable: list[tuple[dict[str, Any], list[_Line], dict[str, int], datetime]] = []

    # -- catalogue -------------------------------------------------------------------------

    def add_products(self, n_returns: int) -> None:
        known = {p["sku"] for p in self.products}
        plenty = 50 + 2 * n_returns  # every exchange can be served from the main warehouse
        ean = 7_390_000_000_000
        for style in _STYLES:
            for size in style.sizes:
                ean += 1
                sku = style.sku(size)
                if sku in known:
                    continue
                stock = 0 if size == style.sold_out else plenty
                self.products.append(
                    {"sku": sku, "ean": str(ean), "stock": {self.main_warehouse: stock}}
                )

    # -- the whole lot ---------------------------------------------------------------------

    def build(self, n_returns: int) -> None:
        if n_returns == 0:
            return
        self.add_products(n_returns)
        names = [name for name, _ in CASES]
        weights = [w for _, w in CASES]
        for i in range(1, n_returns + 1):
            case = self.rng.choices(names, weights)[0]
            if case == "two" and not self.reusable:
                case = "std"
            if case == "two":
                self.second_return(i)
            else:
                self.new_return(i, case)

    def return_id(self, i: int, case: str) -> str:
        rid = f"gen_{case}_{i:05d}"
        while rid in self.ids:
            rid += "x"
        self.ids.add(rid)
        return rid

    def order_number(self) -> int:
        while self.next_number in self.taken_numbers:
            self.next_number += 1
        number = self.next_number
        self.taken_numbers.add(number)
        self.next_number += 1
        return number

    # -- one order -------------------------------------------------------------------------

    def new_order(
        self, created: datetime, *, min_lines: int, exchange: str | None
    ) -> tuple[dict[str, Any], list[_Line]]:
        """A shipped order; with `exchange` (a case), its first line can be exchanged that way."""
        rng = self.rng
        currency, market, tax, _ = rng.choices(_MARKETS, [m[3] for m in _MARKETS])[0]
        n_lines = max(min_lines, rng.choices((1, 2, 3, 4), (45, 30, 15, 10))[0])
        styles = rng.sample(_STYLES, n_lines)
        if exchange is not None:
            fits = [s for s in _STYLES if _exchangeable(s, exchange)]
            if not _exchangeable(styles[0], exchange):
                first = rng.choice(fits)
                styles = [first, *(s for s in styles if s != first)][:n_lines]
        lines = [
            _Line(
                sku=rng.choice(style.in_stock()),
                quantity=rng.choices((1, 2), (85, 15))[0],
                price=style.price(currency),
                style=style,
            )
            for style in styles
        ]
        if rng.random() < 0.06:  # bought twice: the same SKU on two lines, at one price
            twin = lines[rng.randrange(len(lines))]
            lines.append(_Line(twin.sku, 1, twin.price, twin.style))
        number = self.order_number()
        order: dict[str, Any] = {
            "number": number,
            "status": "SHIPPED",
            "currency": currency,
            "market": market,
            "customer_email": f"shopper{number}@example.com",
            "created_at": created,
            "shipping": _SHIPPING[currency] if rng.random() < 0.6 else Decimal("0.00"),
            "lines": [
                {
                    "sku": ln.sku,
                    "quantity": ln.quantity,
                    "unit_price": ln.price,
                    "tax_percent": Decimal(tax),
                }
                for ln in lines
            ],
        }
        if len(lines) >= 2 and rng.random() < 0.15:  # shipped in two parcels
            split = max(1, len(lines) // 2)
            order["shipments"] = [
                {
                    "shipped": True,
                    "lines": [{"line": j + 1, "quantity": lines[j].quantity} for j in part],
                }
                for part in (range(split), range(split, len(lines)))
            ]
        self.orders.append(order)
        return order, lines

    # -- one return ------------------------------------------------------------------------

    def new_return(self, i: int, case: str) -> None:
        rng = self.rng
        instant = case in ("inst", "instsc") or (case in ("rej", "open") and rng.random() < 0.35)
        # instant returns still open are recent: no instant_deadline_near by accident
        days_ago = rng.uniform(0.5, 20 if instant or case == "open" else 45)
        created = self.now - timedelta(days=days_ago, minutes=rng.randrange(60))
        ordered = created - timedelta(days=rng.uniform(3, 20))
        ordered = ordered.replace(microsecond=0)
        exchange = {"exch": "exch", "exoos": "exoos", "mix": "exch"}.get(case)
        min_lines = 2 if case in ("mix", "pacc") else 1
        order, lines = self.new_order(ordered, min_lines=min_lines, exchange=exchange)
        units = _units_by_sku(lines)
        if case in ("exch", "exoos"):  # one item, into another size of the same style
            picked = [(lines[0].sku, 1)]
        else:
            first = lines[0].sku if case == "mix" else None
            picked = self.pick_items(units, min_items=min_lines, first=first)
        self.add_return(i, case, order, lines, picked, created, instant)
        remaining = dict(units)
        for sku, qty in picked:
            remaining[sku] -= qty
        if any(remaining.values()) and case not in ("canc", "exp"):
            self.reusable.append((order, lines, remaining, created))

    def second_return(self, i: int) -> None:
        rng = self.rng
        order, lines, remaining, first = self.reusable.pop(rng.randrange(len(self.reusable)))
        left = [(sku, qty) for sku, qty in remaining.items() if qty > 0]
        sku, qty = rng.choice(left)
        span = max((self.now - first).total_seconds() - 60, 1)
        created = first + timedelta(seconds=rng.uniform(30, span))
        case = rng.choices(("std", "sc", "inst", "pacc"), (60, 15, 15, 10))[0]
        picked = [(sku, rng.randint(1, qty))]
        if case == "pacc":
            others = [(s, q) for s, q in left if s != sku]
            if not others:
                case = "std"
            else:
                picked.append((others[0][0], 1))
        self.add_return(i, "two", order, lines, picked, created, case == "inst", shape=case)

    def pick_items(
        self, units: dict[str, int], *, min_items: int, first: str | None = None
    ) -> list[tuple[str, int]]:
        """Which SKUs (and how many units) go back: at least `min_items` distinct SKUs,
        `first` (when given) first."""
        rng = self.rng
        skus = [s for s in units if s != first]
        count = max(min_items, rng.choices((1, 2, 3), (65, 25, 10))[0])
        chosen = ([first] if first else []) + rng.sample(skus, min(count, len(units)) - bool(first))
        return [(sku, units[sku] if rng.random() < 0.7 else 1) for sku in chosen]

    def add_return(
        self,
        i: int,
        case: str,
        order: dict[str, Any],
        lines: Sequence[_Line],
        picked: list[tuple[str, int]],
        created: datetime,
        instant: bool,
        *,
        shape: str | None = None,
    ) -> None:
        """One Reveni return for `picked` (sku, units) of `order`, shaped by `case`."""
        rng = self.rng
        shape = shape or case
        price = {ln.sku: ln.price for ln in lines}
        style = {ln.sku: ln.style for ln in lines}
        items: list[dict[str, Any]] = []
        for sku, qty in picked:
            items.append(
                {
                    "sku": sku,
                    "quantity": qty,
                    "reason": rng.choice(_REASONS),
                    "restock": rng.random() < 0.8,
                }
            )
        kind = "refund"
        if shape in ("exch", "exoos"):
            kind = "exchange"
            for item in items:
                item["exchange_sku"] = self.replacement(style[item["sku"]], item["sku"], shape)
        elif shape == "mix":  # the first item (exchangeable by construction) is swapped
            kind = "mixed"
            first = items[0]
            first["exchange_sku"] = self.replacement(style[first["sku"]], first["sku"], "exch")
        if shape == "pacc":
            for item in items[1:]:
                item["accepted"] = False
                item["restock"] = False
        history = self.history(shape, instant)
        decision = next(
            (s for s in history if s in ("accepted", "partially_accepted", "rejected")), None
        )
        if decision == "rejected":
            for item in items:
                item["restock"] = False
        ret: dict[str, Any] = {
            "id": self.return_id(i, case),
            "order_number": order["number"],
            "type": kind,
            "instant": instant,
            "created_at": created.replace(microsecond=0),
            "items": items,
            "history": history,
        }
        if kind != "exchange":
            refunded = [it for it in items if "exchange_sku" not in it]
            if instant or decision is None or decision == "rejected":
                paid = refunded  # an instant refund pays every unit at once
            else:
                paid = [it for it in refunded if it.get("accepted", True)]
            amount = sum((price[it["sku"]] * it["quantity"] for it in paid), Decimal("0.00"))
            if shape == "mism":
                amount -= min(amount, _GOODWILL[order["currency"]])
            ret["refund"] = {"method": self.method(shape, instant), "amount": _cents(amount)}
        self.returns.append(ret)

    def replacement(self, style: _Style, sku: str, shape: str) -> str:
        if shape == "exoos" and style.sold_out is not None:
            return style.sku(style.sold_out)
        others = [s for s in style.in_stock() if s != sku]
        return self.rng.choice(others) if others else sku  # the same again (a faulty one)

    def method(self, shape: str, instant: bool) -> str:
        if instant:
            return (
                "store_credit"
                if shape == "instsc" or self.rng.random() < 0.15
                else ("bank_transfer")
            )
        if shape == "sc":
            return "store_credit"
        return "store_credit" if self.rng.random() < 0.05 else "original_payment_method"

    def history(self, shape: str, instant: bool) -> list[str]:
        rng = self.rng
        steps = ["pending", "in_progress"] if rng.random() < 0.05 else ["in_progress"]
        if shape == "canc":
            return [*steps, "cancelled"]
        if shape == "exp":
            return [*steps, "expired"]
        if rng.random() < 0.9:
            steps.append("shipped")
            if rng.random() < 0.05:
                steps += ["on_hold", "shipped"]
        steps.append("received")
        if rng.random() < 0.15:
            steps.append("for_review")
        if shape == "open":
            return steps[: rng.randint(1, len(steps))] if steps[0] != "pending" else steps
        decision = {"pacc": "partially_accepted", "rej": "rejected"}.get(shape, "accepted")
        steps.append(decision)
        if decision != "rejected" and rng.random() < 0.35:
            steps.append("completed")
        return steps


def _exchangeable(style: _Style, case: str) -> bool:
    """Whether an item of `style` can be exchanged as `case` asks: into a sold-out size
    (`exoos`), or into another size in stock."""
    if case == "exoos":
        return style.sold_out is not None and len(style.in_stock()) >= 1
    return len(style.in_stock()) >= 2


def _units_by_sku(lines: Sequence[_Line]) -> dict[str, int]:
    units: dict[str, int] = {}
    for line in lines:
        units[line.sku] = units.get(line.sku, 0) + line.quantity
    return units


def _cents(amount: Decimal) -> Decimal:
    return Decimal(amount).quantize(Decimal("0.01"))
