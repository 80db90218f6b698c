"""The named GraphQL documents the client sends, loaded once from `operations/*.graphql`.

Nothing else in returnbridge writes a Centra query string: one home per wire format
(docs/architecture.md#rooms-and-imports).
Each operation is sent as a self-contained document: the operation plus exactly the fragments it
uses, transitively. `validation_errors` checks every document against an SDL; the tests run it
against the SDL the simulator executes, so a field Centra does not document fails in CI, not in
production.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    Node,
    OperationDefinitionNode,
    OperationType,
    build_schema,
    parse,
    print_ast,
    validate,
    visit,
)
from graphql.language import Visitor

PACKAGE = "returnbridge.connectors.centra"


@dataclass(frozen=True)
class Operation:
    """One named GraphQL operation ready to send."""

    name: str
    text: str
    is_mutation: bool


class _SpreadCollector(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_args: object) -> None:
        self.names.add(node.name.value)


def _spreads(node: Node) -> set[str]:
    collector = _SpreadCollector()
    visit(node, collector)
    return collector.names


def _read_sources() -> dict[str, str]:
    folder = resources.files(PACKAGE) / "operations"
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".graphql")
    }


def _build(sources: Mapping[str, str]) -> dict[str, Operation]:
    fragments: dict[str, FragmentDefinitionNode] = {}
    operations: list[OperationDefinitionNode] = []
    for filename, text in sources.items():
        for definition in parse(text).definitions:
            if isinstance(definition, FragmentDefinitionNode):
                name = definition.name.value
                if name in fragments:
                    raise ValueError(f"{filename}: fragment {name} is defined twice")
                fragments[name] = definition
            elif isinstance(definition, OperationDefinitionNode):
                if definition.name is None:
                    raise ValueError(f"{filename}: every operation must be named")
                operations.append(definition)
    built: dict[str, Operation] = {}
    for operation in operations:
        assert operation.name is not None
        name = operation.name.value
        if name in built:
            raise ValueError(f"operation {name} is defined twice")
        needed: list[str] = []
        pending = sorted(_spreads(operation))
        while pending:
            fragment = pending.pop()
            if fragment in needed:
                continue
            if fragment not in fragments:
                raise ValueError(f"operation {name} uses unknown fragment {fragment}")
            needed.append(fragment)
            pending.extend(sorted(_spreads(fragments[fragment])))
        document = DocumentNode(definitions=(operation, *(fragments[f] for f in sorted(needed))))
        built[name] = Operation(
            name=name,
            text=print_ast(document),
            is_mutation=operation.operation is OperationType.MUTATION,
        )
    return built


@cache
def operations() -> Mapping[str, Operation]:
    """Every operation in `operations/`, by name (read and parsed once per process)."""
    return MappingProxyType(_build(_read_sources()))


def operation(name: str) -> Operation:
    """The operation called `name`; KeyError names the known ones if it does not exist."""
    try:
        return operations()[name]
    except KeyError:
        raise KeyError(f"no Centra operation {name!r}; known: {sorted(operations())}") from None


def validation_errors(sdl: str) -> dict[str, list[GraphQLError]]:
    """Each operation's validation errors against `sdl` (empty lists when all is well)."""
    schema = build_schema(sdl)
    return {name: validate(schema, parse(op.text)) for name, op in operations().items()}


def schema_sdl() -> str:
    """The Centra SDL kept next to the client (written from Centra's documentation)."""
    return (resources.files(PACKAGE) / "schema.graphql").read_text(encoding="utf-8")
