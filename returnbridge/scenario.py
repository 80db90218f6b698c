"""Scenario files (docs/architecture.md#scenario-files): the data both simulators start from,
plus seeded faults.

A scenario is YAML or JSON. It is validated strictly: unknown keys, wrong types, an order line or
return item naming an unknown SKU, or a shipment naming a line that does not exist are errors that
name the file, the key path and the problem. A return naming an order Centra does not have is
legal: that is how `order_not_found` is shown.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from returnbridge.connectors.centra.plans import PLANS
from returnbridge.connectors.reveni.statuses import (
    DECISIONS,
    ReturnStatus,
    StatusMoveError,
    check_history,
)

# Simulated time starts here when a scenario gives no `now` (the simulators' clocks too).
DEFAULT_START = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp needs a timezone (for example a trailing Z)")
    return value.astimezone(UTC)


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]
# Counts and numbers are whole numbers as written: `true` is not order 1, "5" and 5.0 are not 5.
Count = Annotated[int, Field(strict=True, ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Warehouse(_Strict):
    id: int = Field(strict=True, ge=1)
    name: str = Field(min_length=1)


class Product(_Strict):
    sku: str = Field(min_length=1)
    ean: str | None = None
    stock: dict[int, Count] = Field(default_factory=dict)  # warehouse id -> physical quantity


class OrderLine(_Strict):
    sku: str = Field(min_length=1)
    quantity: int = Field(strict=True, ge=1)
    unit_price: Money
    tax_percent: Decimal = Field(default=Decimal("25"), ge=0, le=100)


class ShipmentLine(_Strict):
    line: int = Field(strict=True, ge=1, description="1-based index into the order's `lines`")
    quantity: int = Field(strict=True, ge=1)


class Shipment(_Strict):
    shipped: bool = True
    lines: list[ShipmentLine] = Field(min_length=1)


OrderStatus = Literal["PENDING", "CONFIRMED", "PROCESSING", "SHIPPED", "ARCHIVED", "CANCELLED"]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class Order(_Strict):
    number: int = Field(strict=True, ge=1)
    status: OrderStatus = "SHIPPED"
    currency: Currency = "SEK"
    market: str = "SE"
    customer_email: str = "customer@example.com"
    created_at: AwareDatetime | None = None
    shipping: Money = Decimal("0.00")
    lines: list[OrderLine] = Field(min_length=1)
    shipments: list[Shipment] | None = None
    refund_gateway_fails: bool = False
    psp: Literal["sync", "async"] = Field(
        "sync",
        description="How the order's PSP answers a refund: at once (`sync`), or by a "
        "REFUND_REQUEST left PENDING that settles `centra.psp_settle_seconds` later on the "
        "simulator clock (`async`, as Adyen and Klarna do).",
    )

    @model_validator(mode="after")
    def _shipments_fit_lines(self) -> Order:
        if self.shipments is None:
            return self
        shipped = [0] * len(self.lines)
        for s_idx, shipment in enumerate(self.shipments):
            for l_idx, sline in enumerate(shipment.lines):
                if sline.line > len(self.lines):
                    raise ValueError(
                        f"shipments[{s_idx}].lines[{l_idx}].line = {sline.line}: the order has "
                        f"only {len(self.lines)} line(s)"
                    )
                shipped[sline.line - 1] += sline.quantity
        for i, (qty, line) in enumerate(zip(shipped, self.lines, strict=True)):
            if qty > line.quantity:
                raise ValueError(
                    f"lines[{i}] ({line.sku}) ships {qty} but only {line.quantity} were ordered"
                )
        return self

    def effective_shipments(self) -> list[Shipment]:
        """The shipments as given, or one shipped shipment holding every line."""
        if self.shipments is not None:
            return self.shipments
        return [
            Shipment(
                shipped=True,
                lines=[
                    ShipmentLine(line=i + 1, quantity=ln.quantity)
                    for i, ln in enumerate(self.lines)
                ],
            )
        ]


class ManualRefund(_Strict):
    order_number: int = Field(strict=True, ge=1)
    amount: Money
    after_sync: bool = Field(
        False,
        description="Made in Centra after returnbridge's sync has run (the demo makes it just "
        "before the reconciliation), instead of being there from the start.",
    )


PlanName = Literal["growth", "enhanced", "high_volume", "enterprise", "unlimited"]
assert set(PlanName.__args__) == set(PLANS)  # type: ignore[attr-defined]


class CentraSection(_Strict):
    plan: PlanName = "growth"
    warehouses: list[Warehouse] = Field(
        default_factory=lambda: [Warehouse(id=1, name="Main"), Warehouse(id=2, name="Returns")]
    )
    returns_warehouse: int = Field(2, strict=True, ge=1)
    products: list[Product] = Field(default_factory=list)
    orders: list[Order] = Field(default_factory=list)
    manual_refunds: list[ManualRefund] = Field(default_factory=list)
    psp_settle_seconds: float = Field(
        60.0,
        ge=0,
        description="Simulator-clock seconds after which an asynchronous PSP answers a refund "
        "request (or `POST /_sim/psp/settle`).",
    )

    @model_validator(mode="after")
    def _references_resolve(self) -> CentraSection:
        warehouse_ids = {w.id for w in self.warehouses}
        if len(warehouse_ids) != len(self.warehouses):
            raise ValueError("warehouses: duplicate warehouse id")
        if self.returns_warehouse not in warehouse_ids:
            raise ValueError(
                f"returns_warehouse: {self.returns_warehouse} is not one of the warehouses "
                f"{sorted(warehouse_ids)}"
            )
        skus: set[str] = set()
        for i, product in enumerate(self.products):
            if product.sku in skus:
                raise ValueError(f"products[{i}].sku: duplicate SKU {product.sku!r}")
            skus.add(product.sku)
            for wid in product.stock:
                if wid not in warehouse_ids:
                    raise ValueError(f"products[{i}].stock: unknown warehouse id {wid}")
        numbers: set[int] = set()
        for o_idx, order in enumerate(self.orders):
            if order.number in numbers:
                raise ValueError(f"orders[{o_idx}].number: duplicate order number {order.number}")
            numbers.add(order.number)
            for l_idx, line in enumerate(order.lines):
                if line.sku not in skus:
                    raise ValueError(
                        f"orders[{o_idx}].lines[{l_idx}].sku: unknown SKU {line.sku!r} "
                        "(not in centra.products)"
                    )
        for r_idx, refund in enumerate(self.manual_refunds):
            if refund.order_number not in numbers:
                raise ValueError(
                    f"manual_refunds[{r_idx}].order_number: order {refund.order_number} "
                    "is not in centra.orders"
                )
        return self

    def order(self, number: int) -> Order | None:
        return next((o for o in self.orders if o.number == number), None)


class ReturnItem(_Strict):
    sku: str = Field(min_length=1)
    quantity: int = Field(strict=True, ge=1)
    reason: str = "other"
    restock: bool = True
    exchange_sku: str | None = None
    accepted: bool = Field(True, description="Inspection outcome when the history decides.")


class Refund(_Strict):
    method: Literal["original_payment_method", "bank_transfer", "store_credit"]
    amount: Money
    currency: Currency | None = Field(
        None, description="Default: the Centra order's currency, else the store's."
    )


class ReveniReturn(_Strict):
    id: str | None = Field(default=None, min_length=1)
    order_number: int = Field(strict=True, ge=1)
    type: Literal["refund", "exchange", "mixed"] = "refund"
    instant: bool = False
    created_at: AwareDatetime | None = None
    customer_email: str | None = Field(None, description="Default: the Centra order's e-mail.")
    items: list[ReturnItem] = Field(min_length=1)
    refund: Refund | None = None
    history: list[ReturnStatus] = Field(default_factory=lambda: ["in_progress"])  # type: ignore[arg-type]
    before_start: bool = Field(
        False,
        description="The whole history happened before the simulation starts (an hour per "
        "step after created_at, no webhooks): a return handled while returnbridge was not "
        "running. Needs created_at.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ReveniReturn:
        if self.before_start and self.created_at is None:
            raise ValueError("before_start: needs created_at (when the history began)")
        try:
            check_history(list(self.history))
        except StatusMoveError as exc:
            raise ValueError(str(exc)) from None
        decision = next((s for s in self.history if s in DECISIONS), None)
        accepted = [item.accepted for item in self.items]
        if decision == "accepted" and not all(accepted):
            raise ValueError(
                "history: `accepted` means every item was accepted; an item has accepted: false "
                "(use partially_accepted)"
            )
        if decision == "partially_accepted" and (all(accepted) or not any(accepted)):
            raise ValueError(
                "history: `partially_accepted` needs at least one item with accepted: true and "
                "one with accepted: false"
            )
        if self.instant and self.refund and self.refund.method == "original_payment_method":
            raise ValueError(
                "refund.method: an instant refund is paid by Reveni (bank_transfer or "
                "store_credit), never to the original payment method"
            )
        if self.type == "mixed" and not (
            any(i.exchange_sku for i in self.items) and any(not i.exchange_sku for i in self.items)
        ):
            raise ValueError("items: a mixed return needs exchanged and refunded items")
        for i, item in enumerate(self.items):
            if self.type == "refund" and item.exchange_sku is not None:
                raise ValueError(f"items[{i}].exchange_sku: a refund return has no exchange SKU")
            if self.type == "exchange" and item.exchange_sku is None:
                raise ValueError(f"items[{i}].exchange_sku: an exchange return needs one")
        if self.type == "exchange" and self.refund is not None:
            raise ValueError("refund: an exchange-only return has no refund")
        return self


class ReveniSection(_Strict):
    store_id: str = Field("store_1", min_length=1)
    store_name: str = "Demo Store"
    currency: Currency = Field("EUR", description="The store's currency (Get Merchant Info).")
    returns: list[ReveniReturn] = Field(default_factory=list)


class CentraFaults(_Strict):
    error_rate: float = Field(0.0, ge=0, le=1)
    rate_limit_rate: float = Field(0.0, ge=0, le=1)
    timeout_after_commit_rate: float = Field(0.0, ge=0, le=1)
    latency_ms: int = Field(0, strict=True, ge=0)


class ReveniFaults(_Strict):
    error_rate: float = Field(0.0, ge=0, le=1)
    duplicate_webhook_rate: float = Field(0.0, ge=0, le=1)
    out_of_order_webhook_rate: float = Field(0.0, ge=0, le=1)
    drop_webhook_rate: float = Field(0.0, ge=0, le=1)


class Faults(_Strict):
    seed: int = Field(42, strict=True)
    centra: CentraFaults = Field(default_factory=CentraFaults)
    reveni: ReveniFaults = Field(default_factory=ReveniFaults)


class Scenario(_Strict):
    now: AwareDatetime | None = None
    centra: CentraSection = Field(default_factory=CentraSection)
    reveni: ReveniSection = Field(default_factory=ReveniSection)
    faults: Faults = Field(default_factory=Faults)

    def start_time(self) -> datetime:
        """The simulated clock's start: `now`, or the simulators' default."""
        return self.now or DEFAULT_START

    @model_validator(mode="after")
    def _returns_name_known_skus(self) -> Scenario:
        skus = {p.sku for p in self.centra.products}
        ids: set[str] = set()
        start = self.start_time()
        for r_idx, ret in enumerate(self.reveni.returns):
            if ret.created_at is not None and ret.created_at > start:
                raise ValueError(
                    f"reveni.returns[{r_idx}].created_at: {ret.created_at.isoformat()} is after "
                    f"the scenario's now ({start.isoformat()}); returns cannot come from the future"
                )
            if ret.id is not None:
                if ret.id in ids:
                    raise ValueError(f"reveni.returns[{r_idx}].id: duplicate return id {ret.id!r}")
                ids.add(ret.id)
            for i_idx, item in enumerate(ret.items):
                for key, sku in (("sku", item.sku), ("exchange_sku", item.exchange_sku)):
                    if sku is not None and sku not in skus:
                        raise ValueError(
                            f"reveni.returns[{r_idx}].items[{i_idx}].{key}: unknown SKU {sku!r} "
                            "(not in centra.products)"
                        )
        return self


class ScenarioError(Exception):
    """A scenario file that cannot be used; the message names the file, the key and the problem."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate already-decoded scenario data; raise ScenarioError on the first problem."""
    if not isinstance(data, dict):
        raise ScenarioError(source, "", "the top level must be a mapping")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        raise ScenarioError(source, _key_path(loc), message) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a YAML or JSON scenario file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), "", f"cannot read the file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start : exc.start + 1].hex()
        raise ScenarioError(
            str(path), "", f"not UTF-8 text: byte 0x{bad} at offset {exc.start} (save it as UTF-8)"
        ) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(
            str(path), "", f"not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}"
        ) from None
    return parse_scenario(data, str(path))
