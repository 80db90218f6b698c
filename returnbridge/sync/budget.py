"""The cross-process budget gate the executor passes before each Centra call
(docs/architecture.md#governed-access-to-centra).

Centra's limits are per environment and shared by every integration. Inside one process the
client's `Governor` already holds our share exactly (sliding windows, `429 Retry-After`); this
module is the *other* half: a gate shared by every process (each Prefect flow run is one), so
that N processes do not each spend the whole share. The gate is a Protocol: `open_sync` passes
the ledger's `LedgerBudgetGate` (`sync/ledger_budget.py`: both windows, exactly, in the ledger
database) unless told otherwise; `NoGate` is the single-process (and test) gate.

(The gate was once made of Prefect global concurrency limits used as token buckets; a token
bucket cannot hold both windows exactly: it never admits the 10-second burst they allow.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit

BudgetKind = Literal["request", "mutation"]


class BudgetGate(Protocol):
    """Waits until `n` calls of `kind` fit the budget shared across processes."""

    async def acquire(self, kind: BudgetKind, n: int = 1) -> None:
        """Return once `n` calls of `kind` may be sent (a mutation is also a request)."""
        ...


class NoGate:
    """No cross-process budget: the client's in-process governor is the only limit."""

    async def acquire(self, kind: BudgetKind, n: int = 1) -> None:
        """Return at once."""
        return None


@dataclass(frozen=True)
class BudgetNames:
    """Names of the shared limits; one pair per Centra environment."""

    request: str = "centra-requests"
    mutation: str = "centra-mutations"

    @classmethod
    def for_environment(cls, base_url: str) -> BudgetNames:
        """The names for the Centra environment at `base_url` (its host and port): two
        integrations against one environment share its limits, other environments do not."""
        parsed = urlsplit(base_url if "//" in base_url else f"//{base_url}")
        where = re.sub(r"[^A-Za-z0-9.:-]+", "-", parsed.netloc or base_url).strip("-")
        return cls(request=f"centra-requests:{where}", mutation=f"centra-mutations:{where}")

    def for_kind(self, kind: BudgetKind) -> list[str]:
        """The limits one call of `kind` draws from: a mutation counts as a request too [C]."""
        if kind == "mutation":
            return [self.request, self.mutation]
        if kind == "request":
            return [self.request]
        raise ValueError(f"unknown budget kind {kind!r}; expected 'request' or 'mutation'")
