"""Helpers for the webhook receiver tests: requests as the senders make them, a served receiver."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from returnbridge.connectors.centra.webhooks import (
    SIGNATURE_HEADER,
    encode_payload,
    signature_header,
)
from returnbridge.connectors.reveni.inferred import DEFAULT_REVENI_INFERRED
from returnbridge.ledger import Ledger
from returnbridge.receiver import AcceptedEvent, ReceiverSettings, create_receiver
from returnbridge.simulators.server import serve_in_thread

REVENI_SECRET = "reveni-whsec"
CENTRA_SECRET = "centra-whsec"
REVENI_HEADER = DEFAULT_REVENI_INFERRED.webhook_signature_header
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
RETURN_ID = "0123456789abcdef0123456789abcdef"


def envelope(event_id: str = "evt_1", status: str = "in_progress", **changes: Any) -> bytes:
    body: dict[str, Any] = {
        "id": event_id,
        "event": "return.updated",
        "created": 1_760_000_000,
        "data": {"resource_id": RETURN_ID, "status": status},
    }
    body.update(changes)
    return json.dumps(body, separators=(",", ":")).encode()


def centra_events(*ids: int, action: str = "update") -> list[dict[str, Any]]:
    return [
        {"type": "order", "action": action, "date": f"2026-10-15 14:00:0{i}.000000", "id": n}
        for i, n in enumerate(ids)
    ]


def centra_request(
    events: list[dict[str, Any]], *, secret: str = CENTRA_SECRET, age: float = 0
) -> tuple[bytes, dict[str, str]]:
    body = encode_payload({"events": events})
    header = signature_header(secret, int(time.time() - age), body)
    return body, {**FORM, SIGNATURE_HEADER: header}


@contextmanager
def serve_receiver(
    ledger: Ledger,
    on_event: Callable[[AcceptedEvent], Any] | None = None,
    **settings: Any,
) -> Iterator[httpx.Client]:
    settings.setdefault("centra_secret", CENTRA_SECRET)
    app = create_receiver(ledger, ReceiverSettings(**settings), on_event=on_event)
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


@contextmanager
def ledger_unavailable(ledger: Ledger, path: Path) -> Iterator[None]:
    """The SQLite file is gone (a directory stands in its place) until the block ends."""
    ledger.close()  # pooled connections would keep the old file open
    moved = [(p, p.with_name(p.name + ".away")) for p in _sqlite_files(path)]
    for src, dst in moved:
        os.replace(src, dst)
    path.mkdir()
    try:
        yield
    finally:
        shutil.rmtree(path)
        for src, dst in moved:
            os.replace(dst, src)


def _sqlite_files(path: Path) -> list[Path]:
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
