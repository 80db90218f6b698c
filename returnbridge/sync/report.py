"""What the executor is told (`ExecutorConfig`) and what one of its runs did (`ExecutionReport`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from returnbridge.core.actions import ACTION_KINDS
from returnbridge.core.codes import ReturnException


@dataclass(frozen=True)
class ExecutorConfig:
    """How the executor spends its budget and how patient it is.

    `priority`: kinds run first, in this order; by default no kind goes first
    (docs/architecture.md#the-executor), the oldest action is. `concurrency`: actions in
    flight at once in this process for each of Centra's budgets (GraphQL mutations; plain
    requests: Order API writes and read-backs), so up to twice this in all: a restock
    waiting for the mutation window never holds a refund back. `max_attempts`: sends of one
    action before a retryable failure becomes `failed` (read-backs do not count). Backoff is
    exponential with jitter from `backoff_seconds`, capped at `backoff_max_seconds`.
    `lease_seconds`: how long a claim is held before another worker may treat it as crashed
    (keep it above the client's timeout plus the longest governor wait).
    `read_back_attempts`: inconclusive read-backs in a row before `action_in_doubt` is
    raised. `in_doubt_settle_seconds`: how long after an uncertain call a read-back that
    finds nothing is believed. `psp_recheck_seconds`: how often a refund waiting for an
    asynchronous PSP's answer is read back.
    """

    priority: tuple[str, ...] = ()
    concurrency: int = 4
    max_attempts: int = 5
    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    lease_seconds: float = 120.0
    read_back_attempts: int = 3
    in_doubt_settle_seconds: float = 30.0
    psp_recheck_seconds: float = 60.0

    def __post_init__(self) -> None:
        unknown = [k for k in self.priority if k not in ACTION_KINDS]
        if unknown:
            raise ValueError(f"priority names unknown kinds {unknown}; known: {ACTION_KINDS}")
        if self.concurrency < 1 or self.max_attempts < 1 or self.read_back_attempts < 1:
            raise ValueError("concurrency, max_attempts and read_back_attempts must be >= 1")
        times = (self.backoff_seconds, self.backoff_max_seconds, self.in_doubt_settle_seconds)
        if min(*times, self.psp_recheck_seconds) < 0:
            raise ValueError("backoff, settle and recheck times may not be negative")
        if self.lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")


@dataclass
class ExecutionReport:
    """What one `run` did. `outcomes`: the state each action it touched was left in."""

    outcomes: dict[str, str] = field(default_factory=dict)
    return_ids: dict[str, str] = field(default_factory=dict)  # action key -> Reveni return id
    retried: int = 0  # sent back to pending: transient, 429, read back as absent
    read_backs: int = 0
    mutations_sent: int = 0  # writes that may have reached Centra
    expired_leases: list[str] = field(default_factory=list)
    exceptions: list[ReturnException] = field(default_factory=list)
    deadline_reached: bool = False
    budget_unavailable: str | None = None  # the gate failed: the run stopped starting work
    # Centra refused our credentials: the run stopped starting work, the action is pending
    credentials_refused: str | None = None
    awaiting_psp: set[str] = field(default_factory=set)  # refunds the PSP has not answered yet

    def _count(self, state: str) -> int:
        return sum(1 for s in self.outcomes.values() if s == state)

    @property
    def done(self) -> int:
        return self._count("done")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def in_doubt(self) -> int:
        return self._count("in_doubt")

    @property
    def blocked(self) -> int:
        return self._count("blocked")

    @property
    def pending(self) -> int:
        return self._count("pending")

    @property
    def done_returns(self) -> list[str]:
        """Reveni return ids with an action done in this run (their next steps may be due)."""
        return sorted({self.return_ids[k] for k, s in self.outcomes.items() if s == "done"})

    def as_summary(self) -> dict[str, Any]:
        """Counts for the run summary and logs."""
        return {
            "done": self.done,
            "retried": self.retried,
            "failed": self.failed,
            "in_doubt": self.in_doubt,
            "blocked": self.blocked,
            "pending": self.pending,
            "awaiting_psp": len(self.awaiting_psp),
            "read_backs": self.read_backs,
            "mutations_sent": self.mutations_sent,
            "expired_leases": len(self.expired_leases),
            "exceptions": [e.as_summary() for e in self.exceptions],
            "deadline_reached": self.deadline_reached,
            "budget_unavailable": self.budget_unavailable,
            "credentials_refused": self.credentials_refused,
        }
