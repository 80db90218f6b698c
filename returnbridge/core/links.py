"""Where a person clicks from an exception: the runbook entry, the order in Centra's admin, the
return in Reveni's dashboard (`settings.links`, environment `RETURNBRIDGE_LINKS__<FIELD>`).

Each is a URL template with `{code}`, `{order_number}`, `{reveni_return_id}` and `{sku}` fields,
filled URL-quoted. Centra's and Reveni's admin addresses differ per brand account and are not
published as a stable scheme, so they have no default (inferred from the admin UIs; set them):

    RETURNBRIDGE_LINKS__CENTRA_ORDER=https://yourbrand.centra.com/AMS/Order/{order_number}
    RETURNBRIDGE_LINKS__REVENI_RETURN=https://app.reveni.io/returns/{reveni_return_id}

A template that names a field the exception does not have (an order-level exception has no
return id) gives no link rather than a broken one.
"""

from __future__ import annotations

import string
from typing import Final, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

FIELDS: Final = ("code", "order_number", "reveni_return_id", "sku")
DEFAULT_RUNBOOK: Final = (
    "https://github.com/returnbridge/returnbridge/blob/main/docs/runbook.md#{code}"
)


class Linkable(Protocol):
    """What a link is made from (an `ExceptionRecord` is one)."""

    @property
    def code(self) -> str: ...
    @property
    def order_number(self) -> int | None: ...
    @property
    def reveni_return_id(self) -> str | None: ...
    @property
    def sku(self) -> str | None: ...


class LinkSettings(BaseModel):
    """URL templates of the links shown with each exception (digests, `exceptions show`)."""

    model_config = ConfigDict(extra="forbid")

    runbook: str | None = Field(
        DEFAULT_RUNBOOK,
        description="The runbook entry of a code, `{code}` is the anchor; point it at your copy "
        "of docs/runbook.md (your fork, wiki or intranet). Empty: no runbook link.",
    )
    centra_order: str | None = Field(
        None,
        description="The order in Centra's admin, e.g. "
        "`https://yourbrand.centra.com/AMS/Order/{order_number}` (inferred). None: no link.",
    )
    reveni_return: str | None = Field(
        None,
        description="The return in Reveni's dashboard, e.g. "
        "`https://app.reveni.io/returns/{reveni_return_id}` (inferred). None: no link.",
    )

    @field_validator("runbook", "centra_order", "reveni_return")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} is not an http(s) URL template")
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid template: {exc}") from None
        unknown = sorted(names - set(FIELDS))
        if unknown:
            raise ValueError(f"{value!r} names {unknown}; the fields are {list(FIELDS)}")
        return value

    def runbook_for(self, code: str) -> str | None:
        """The runbook entry of `code` alone (a report's table of codes has no order or return
        to fill other fields with: a template naming them gives no link)."""
        return _fill(self.runbook, {"code": code})

    def links_for(self, item: Linkable) -> dict[str, str]:
        """The links of `item` by name (`runbook`, `centra`, `reveni`), only those that can be
        made."""
        values = {
            "code": item.code,
            "order_number": None if item.order_number is None else str(item.order_number),
            "reveni_return_id": item.reveni_return_id,
            "sku": item.sku,
        }
        out: dict[str, str] = {}
        for name, template in (
            ("runbook", self.runbook),
            ("centra", self.centra_order),
            ("reveni", self.reveni_return),
        ):
            url = _fill(template, values)
            if url is not None:
                out[name] = url
        return out


_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)


def quote(value: str) -> str:
    """`value` percent-encoded as one URL path segment or query value (RFC 3986 unreserved
    characters kept; core/ does not import urllib)."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in value.encode("utf-8"))


def _fill(template: str | None, values: dict[str, str | None]) -> str | None:
    if template is None:
        return None
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    if any(not values.get(name) for name in names):
        return None
    return template.format(**{k: quote(v or "") for k, v in values.items()})
