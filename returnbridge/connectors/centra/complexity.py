"""Estimate a request's QUERY_COMPLEXITY cost before sending it, so the governor can budget it.

Centra meters complexity in its own bucket ([C] [RL-new]) and reports each request's cost in
`extensions.complexity` ([C]), but does not publish the formula. The estimate follows the
[INF] formula the simulator also uses: every field costs 1, and a list field multiplies the cost
of its selection by its page size (`limit` / `first` / `last`; a default page size when a
paginated list is given none; a fixed size for an unpaginated nested list such as `lines`); a
connection's page size applies to its `edges`. Both sizes are `CentraInferred` settings.

The transport learns the real cost from `extensions.complexity` and prefers it once seen, so a
real Centra with a different formula is budgeted by what it actually charges.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    build_schema,
    get_named_type,
    parse,
)

from returnbridge.connectors.centra.documents import Operation, schema_sdl
from returnbridge.connectors.centra.inferred import CentraInferred

Composite = GraphQLObjectType | GraphQLInterfaceType


@cache
def _schema() -> GraphQLSchema:
    return build_schema(schema_sdl())


@cache
def _parsed(text: str) -> DocumentNode:
    return parse(text)


def _is_list(type_: GraphQLType) -> bool:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


class _Estimator:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        inferred: CentraInferred,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.default_page = inferred.complexity_default_page_size
        self.nested_list = inferred.complexity_nested_list_size

    def _page_size(self, node: FieldNode) -> int | None:
        for argument in node.arguments:
            if argument.name.value not in ("limit", "first", "last"):
                continue
            value = argument.value
            if isinstance(value, IntValueNode):
                return int(value.value)
            if isinstance(value, VariableNode):
                found = self.variables.get(value.name.value)
                return found if isinstance(found, int) else None
        return None

    def _composite(self, name: str) -> Composite:
        found = self.schema.get_type(name)
        if not isinstance(found, GraphQLObjectType | GraphQLInterfaceType):
            raise ValueError(f"{name} is not an object or interface type")
        return found

    def cost(self, parent: Composite, selections: SelectionSetNode, page: int | None) -> int:
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                total += self._field(parent, selection, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = parent if condition is None else self._composite(condition.name.value)
                total += self.cost(target, selection.selection_set, page)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments[selection.name.value]
                target = self._composite(fragment.type_condition.name.value)
                total += self.cost(target, fragment.selection_set, page)
        return total

    def _field(self, parent: Composite, node: FieldNode, inherited_page: int | None) -> int:
        name = node.name.value
        if name.startswith("__"):
            return 0
        if node.selection_set is None:
            return 1
        definition = parent.fields[name]
        named = get_named_type(definition.type)
        assert isinstance(named, GraphQLObjectType | GraphQLInterfaceType)
        page = self._page_size(node)
        multiplier = 1
        if _is_list(definition.type):
            if page is not None:
                multiplier = page
            elif name == "edges" and inherited_page is not None:
                multiplier = inherited_page
            elif "limit" in definition.args:
                multiplier = self.default_page
            else:
                multiplier = self.nested_list
        elif "first" in definition.args:  # a connection: its page size applies to `edges`
            inherited_page = page if page is not None else self.default_page
        return 1 + multiplier * self.cost(named, node.selection_set, inherited_page)


def operation_complexity(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    inferred: CentraInferred,
) -> int:
    """The [INF] complexity of one parsed operation. The simulator charges exactly this, so the
    client's estimate and the simulator's bill come from one formula."""
    root = schema.get_root_type(operation.operation)
    assert root is not None
    return _Estimator(schema, fragments, variables, inferred).cost(
        root, operation.selection_set, None
    )


def estimate_complexity(
    operation: Operation, variables: Mapping[str, Any], inferred: CentraInferred
) -> int:
    """The [INF] complexity cost of sending `operation` with `variables`."""
    document = _parsed(operation.text)
    schema = _schema()
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return sum(
        operation_complexity(schema, definition, fragments, variables, inferred)
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    )
