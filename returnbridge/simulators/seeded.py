"""What both simulators' fault injectors share: validated settings, reseeding, partial updates.

Each injector keeps its own draws (which numbers a request or a delivery takes); this base owns
the settings object and restarts the generators whenever the settings change, so the same seed
and the same traffic always give the same faults.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, replace
from typing import Any, Generic, Protocol, Self, TypeVar


class _Settings(Protocol):
    @property
    def seed(self) -> int: ...

    def validated(self) -> Self: ...


SettingsT = TypeVar("SettingsT", bound=_Settings)


class SeededInjector(Generic[SettingsT]):
    """Holds fault settings (a frozen dataclass with `seed` and `validated()`)."""

    def __init__(self, settings: SettingsT) -> None:
        self._lock = threading.Lock()
        self.configure(settings)

    def _reseed(self, seed: int) -> None:
        """Restart the generators from `seed` (called under the lock)."""
        raise NotImplementedError

    def configure(self, settings: SettingsT) -> None:
        """Replace the settings and restart the generators from the seed."""
        settings = settings.validated()
        with self._lock:
            self.settings = settings
            self._reseed(settings.seed)

    def update(self, **changes: Any) -> SettingsT:
        """Change some settings (unknown names are a ValueError naming them)."""
        unknown = set(changes) - set(asdict(self.settings))  # type: ignore[call-overload]
        if unknown:
            raise ValueError(f"unknown fault setting(s): {sorted(unknown)}")
        self.configure(replace(self.settings, **changes))  # type: ignore[type-var]
        return self.settings
