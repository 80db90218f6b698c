"""The executable Centra schema: the SDL in connectors/centra/schema.graphql plus scalars.

The SDL is the single description of Centra's surface: the client validates its documents
against it, and the simulator executes it, so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import date, datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from graphql import (
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLScalarType,
    GraphQLSchema,
    StringValueNode,
    ValueNode,
    build_schema,
)

from returnbridge.simulators.centra.timefmt import parse_datetime

IMPLEMENTATIONS = {
    "Order": "DirectToConsumerOrder",
    "Shipment": "DirectToConsumerShipment",
    "Return": "DirectToConsumerReturn",
}


def schema_sdl() -> str:
    return resources.files("returnbridge.connectors.centra").joinpath("schema.graphql").read_text()


def _payload_type(value: Any, *_: Any) -> str:
    raise GraphQLError("Payload is only used through its implementations.")


def build_centra_schema(tz: ZoneInfo) -> GraphQLSchema:
    """Build the schema; naive input dates are read in `tz` (the merchant's zone)."""
    schema = build_schema(schema_sdl())

    def parse_dt(value: Any) -> datetime:
        if not isinstance(value, str):
            raise GraphQLError("DateTimeTz must be a string.")
        try:
            return parse_datetime(value, tz)
        except ValueError as exc:
            raise GraphQLError(str(exc)) from None

    def parse_date(value: Any) -> date:
        if not isinstance(value, str):
            raise GraphQLError("Date must be a string.")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise GraphQLError(f"{value!r} is not a date (YYYY-MM-DD).") from None

    for name, parser in (("DateTimeTz", parse_dt), ("Date", parse_date)):
        scalar = schema.type_map[name]
        assert isinstance(scalar, GraphQLScalarType)
        scalar.parse_value = parser  # type: ignore[method-assign]

        def parse_literal(
            node: ValueNode, _variables: Any = None, parser: Any = parser, name: str = name
        ) -> Any:
            if not isinstance(node, StringValueNode):
                raise GraphQLError(f"{name} must be a string.")
            return parser(node.value)

        scalar.parse_literal = parse_literal  # type: ignore[method-assign,assignment]

    for interface, concrete in IMPLEMENTATIONS.items():
        iface = schema.type_map[interface]
        assert isinstance(iface, GraphQLInterfaceType)
        iface.resolve_type = lambda _value, _info, _type, concrete=concrete: concrete
    payload = schema.type_map["Payload"]
    assert isinstance(payload, GraphQLInterfaceType)
    payload.resolve_type = _payload_type
    return schema
