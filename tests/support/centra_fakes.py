"""Test doubles shared by the Centra client tests."""

from __future__ import annotations

import asyncio


class FakeClock:
    """Virtual time for a Governor: `sleep` moves the clock forward instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        target = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, target)
