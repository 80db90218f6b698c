"""returnbridge's own webhook receiver: Reveni and Centra webhooks into the ledger's inbox.

`create_receiver` builds the ASGI app, `run_receiver` serves it with uvicorn, `DebouncedTrigger`
turns bursts of accepted events into one sync request.
"""

from returnbridge.receiver.app import (
    CENTRA_PATH,
    HEALTH_PATH,
    REVENI_PATH,
    AcceptedEvent,
    OnEvent,
    create_receiver,
    run_receiver,
)
from returnbridge.receiver.settings import ReceiverSettings
from returnbridge.receiver.trigger import DebouncedTrigger

__all__ = [
    "CENTRA_PATH",
    "HEALTH_PATH",
    "REVENI_PATH",
    "AcceptedEvent",
    "DebouncedTrigger",
    "OnEvent",
    "ReceiverSettings",
    "create_receiver",
    "run_receiver",
]
