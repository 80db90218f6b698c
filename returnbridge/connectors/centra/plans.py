"""Centra's published rate-limit tiers ([C] [RL-new]).

Three buckets (requests, mutations, query complexity), each with a 10-second and a 1-hour window.
Limits are per Centra environment and shared by every integration, which is why returnbridge only
ever takes a configured share of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RateLimitType(StrEnum):
    """`RateLimitType` enum of the `rateLimits` query. [C] [RL-old]"""

    REQUEST_COUNT = "REQUEST_COUNT"
    QUERY_COMPLEXITY = "QUERY_COMPLEXITY"
    MUTATION_COUNT = "MUTATION_COUNT"


class RateLimitInterval(StrEnum):
    """`RateLimitInterval` enum; the value is the window length in seconds."""

    TEN_SECONDS = "TEN_SECONDS"
    ONE_HOUR = "ONE_HOUR"

    @property
    def seconds(self) -> int:
        return 10 if self is RateLimitInterval.TEN_SECONDS else 3600


@dataclass(frozen=True)
class Quota:
    ten_seconds: int
    one_hour: int

    def for_interval(self, interval: RateLimitInterval) -> int:
        return self.ten_seconds if interval is RateLimitInterval.TEN_SECONDS else self.one_hour


@dataclass(frozen=True)
class Plan:
    """One Centra tier. `None` quotas mean "not limited" (the simulator's `unlimited` plan)."""

    name: str
    requests: Quota | None
    mutations: Quota | None
    complexity: Quota | None

    def quota(self, kind: RateLimitType) -> Quota | None:
        return {
            RateLimitType.REQUEST_COUNT: self.requests,
            RateLimitType.MUTATION_COUNT: self.mutations,
            RateLimitType.QUERY_COMPLEXITY: self.complexity,
        }[kind]

    @property
    def limited(self) -> bool:
        return self.requests is not None


PLANS: dict[str, Plan] = {
    "growth": Plan("growth", Quota(60, 5_000), Quota(20, 1_800), Quota(250_000, 30_000_000)),
    "enhanced": Plan("enhanced", Quota(150, 20_000), Quota(50, 4_500), Quota(900_000, 90_000_000)),
    "high_volume": Plan(
        "high_volume", Quota(450, 40_000), Quota(150, 7_000), Quota(1_800_000, 180_000_000)
    ),
    "enterprise": Plan(
        "enterprise", Quota(1_500, 85_000), Quota(500, 25_000), Quota(4_000_000, 400_000_000)
    ),
    # Not a Centra tier: the simulator's "limits off" mode, for latency measurements and unit tests.
    "unlimited": Plan("unlimited", None, None, None),
}


def get_plan(name: str) -> Plan:
    """Return the plan called `name`, or raise ValueError naming the valid ones."""
    try:
        return PLANS[name]
    except KeyError:
        raise ValueError(f"unknown Centra plan {name!r}; expected one of {sorted(PLANS)}") from None
