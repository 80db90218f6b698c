"""Static analysis of a validated GraphQL request: cost, mutations, permissions, deprecations.

Centra meters QUERY_COMPLEXITY per request and reports it in `extensions.complexity` ([C]);
its formula is not published. The simulator charges the [INF] formula of
`connectors/centra/complexity.py`, the same one the client budgets with.

Permission names are Centra's `Type:read` / `Type:write` / `Type.field:read` ([C] [AUTH]; the
per-type mapping below is [INF] where the docs do not name the exact permission).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)

from returnbridge.connectors.centra.complexity import operation_complexity
from returnbridge.connectors.centra.inferred import CentraInferred

TYPE_PERMISSIONS = {
    "Order": "Order:read",
    "DirectToConsumerOrder": "Order:read",
    "WholesaleOrder": "Order:read",
    "Account": "Account:read",
    "Buyer": "Buyer:read",
    "Shipment": "Shipment:read",
    "DirectToConsumerShipment": "Shipment:read",
    "Return": "Return:read",
    "DirectToConsumerReturn": "Return:read",
    "PaymentHistoryEntry": "PaymentHistory:read",
    "Customer": "Customer:read",
    "Product": "Product:read",
    "ProductVariant": "ProductVariant:read",
    "ProductSize": "ProductSize:read",
    "Warehouse": "Warehouse:read",
    "StockChange": "StockChange:read",
    "StockChangeLine": "StockChange:read",
    "AdminUser": "AdminUser:read",  # [C-ex] (createShipment's permissionsUsed)
    "StorePlugin": "StorePlugin:read",  # [C-ex]
}
FIELD_PERMISSIONS = {
    ("Order", "shippingAddress"): "Order.shippingAddress:read",
    ("Order", "billingAddress"): "Order.billingAddress:read",
    ("Shipment", "shippingAddress"): "Shipment.shippingAddress:read",  # [C-ex]
    ("ProductSize", "stockTotals"): "ProductSize.stockTotals:read",
    ("Warehouse", "stock"): "Warehouse.stock:read",
    ("Warehouse", "stockTotals"): "Warehouse.stockTotals:read",
    ("Counters", "orders"): "Order:read",
    ("Counters", "returns"): "Return:read",
    ("Counters", "products"): "Product:read",
    ("Mutation", "createReturn"): "Return:write",
    ("Mutation", "completeReturn"): "Return:write",
    ("Mutation", "uncompleteReturn"): "Return:write",
    ("Mutation", "deleteReturn"): "Return:write",
    ("Mutation", "changeStock"): "StockChange:write",
    ("Mutation", "setStock"): "StockChange:write",
    # Order and shipment processing: [C-ex] from the permissionsUsed of Centra's examples,
    # [INF] for the two captures (the examples do not show theirs).
    ("Mutation", "updateDirectToConsumerOrder"): "Order:write",
    ("Mutation", "cancelDirectToConsumerOrder"): "Order:write",
    ("Mutation", "confirmOrder"): "Order:write",
    ("Mutation", "setOrdersLock"): "Order.isLocked:write",
    ("Mutation", "captureOrder"): "Order:write",  # [INF]
    ("Mutation", "releaseRemainingOrderAuthorization"): "Payment.cancel:write",
    ("Mutation", "createShipment"): "Shipment:write",
    ("Mutation", "updateShipment"): "Shipment:write",
    ("Mutation", "captureShipment"): "Shipment:write",  # [INF]
    ("Mutation", "completeShipment"): "Shipment:write",
}
_INTERFACE_OF = {
    "DirectToConsumerOrder": "Order",
    "WholesaleOrder": "Order",
    "DirectToConsumerShipment": "Shipment",
    "DirectToConsumerReturn": "Return",
}


@dataclass
class RequestAnalysis:
    """What one operation will cost and touch, computed before it runs."""

    operation_type: str  # query | mutation
    top_level_fields: list[str] = field(default_factory=list)
    complexity: int = 0
    permissions: dict[str, str] = field(default_factory=dict)  # permission -> first top field
    deprecated_fields: set[str] = field(default_factory=set)

    @property
    def mutation_count(self) -> int:
        """One MUTATION_COUNT token per mutation field, aliases included ([C] [PIM])."""
        return len(self.top_level_fields) if self.operation_type == "mutation" else 0


class _Walker:
    """Collects the top-level fields, permissions and deprecated fields an operation touches."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        result: RequestAnalysis,
    ) -> None:
        self.schema, self.fragments, self.result = schema, fragments, result

    def visit(
        self,
        parent: GraphQLObjectType | GraphQLInterfaceType,
        selection_set: SelectionSetNode,
        top: str | None,
    ) -> None:
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                self._field(parent, sel, top)
            elif isinstance(sel, InlineFragmentNode):
                target = parent
                if sel.type_condition is not None:
                    target = self._composite(sel.type_condition.name.value)
                self.visit(target, sel.selection_set, top)
            elif isinstance(sel, FragmentSpreadNode):
                frag = self.fragments[sel.name.value]
                self.visit(self._composite(frag.type_condition.name.value), frag.selection_set, top)

    def _composite(self, name: str) -> GraphQLObjectType | GraphQLInterfaceType:
        found = self.schema.get_type(name)
        assert isinstance(found, GraphQLObjectType | GraphQLInterfaceType)
        return found

    def _field(
        self, parent: GraphQLObjectType | GraphQLInterfaceType, node: FieldNode, top: str | None
    ) -> None:
        name = node.name.value
        if name.startswith("__"):
            return
        if parent.name in ("Query", "Mutation"):
            top = node.alias.value if node.alias else name
            self.result.top_level_fields.append(name)
        assert top is not None
        definition = parent.fields[name]
        if definition.deprecation_reason is not None:
            self.result.deprecated_fields.add(f"{parent.name}.{name}")
        owner = _INTERFACE_OF.get(parent.name, parent.name)
        named = get_named_type(definition.type)
        permission = FIELD_PERMISSIONS.get((owner, name)) or TYPE_PERMISSIONS.get(named.name)
        if permission:
            self.result.permissions.setdefault(permission, top)
        if node.selection_set is not None:
            assert isinstance(named, GraphQLObjectType | GraphQLInterfaceType)
            self.visit(named, node.selection_set, top)


def analyse(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    inferred: CentraInferred,
) -> RequestAnalysis:
    """Cost, mutation count, permissions and deprecated fields of `operation`."""
    op_type = operation.operation.value
    root = schema.mutation_type if op_type == "mutation" else schema.query_type
    assert root is not None
    result = RequestAnalysis(operation_type=op_type)
    _Walker(schema, fragments, result).visit(root, operation.selection_set, None)
    result.complexity = operation_complexity(schema, operation, fragments, variables, inferred)
    return result
