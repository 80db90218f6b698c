"""Build a ready-to-run `Reconciliation` (the sync's clients and ledger, plus the warehouse and
Slack) from the settings: the one way flows, the CLI and the demo wire the reconciliation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from returnbridge.clock import Now, utc_now
from returnbridge.connectors.slack import DigestPoster
from returnbridge.ledger import Ledger
from returnbridge.reconcile.digests import DigestRenderer
from returnbridge.reconcile.run import Reconciliation
from returnbridge.reconcile.warehouse import Warehouse
from returnbridge.settings import Settings
from returnbridge.sync.budget import BudgetGate
from returnbridge.sync.runtime import open_sync


@asynccontextmanager
async def open_reconciliation(
    settings: Settings,
    *,
    render_digest: DigestRenderer,
    ledger: Ledger | None = None,
    budget: BudgetGate | None = None,
    clock: Now = utc_now,
    poster: DigestPoster | None = None,
) -> AsyncIterator[Reconciliation]:
    """A `Reconciliation` over the sync's clients and ledger, the warehouse, and Slack (a
    `DigestPoster` from `settings.slack` unless one is given, none when Slack is disabled or has
    no token); `render_digest` turns a digest into Slack's text and blocks
    (`reports.digest.render_digest`, given by the entry point: the library never imports
    `reports/`). `budget`: the executor's cross-process gate, as for `open_sync` (default: the
    ledger's, shared with every sync on the same ledger and Centra environment). Closes what it
    opened."""
    rec = settings.reconcile
    if poster is None and settings.slack.active:
        poster = settings.slack.client()
    with Warehouse(
        rec.warehouse_path,
        threads=rec.duckdb_threads,
        memory_limit=rec.duckdb_memory_limit,
        clock=clock,
    ) as warehouse:
        async with open_sync(settings, ledger=ledger, budget=budget, clock=clock) as sync:
            yield Reconciliation(
                reveni=sync.reveni,
                centra=sync.centra,
                ledger=sync.ledger,
                warehouse=warehouse,
                sync=sync,
                settings=rec,
                slack=settings.slack,
                poster=poster,
                render_digest=render_digest,
                clock=clock,
                links=settings.links,
            )
