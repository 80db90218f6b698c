"""The async-context-manager shape every connector client shares."""

from __future__ import annotations

from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar


class _Closable(Protocol):
    async def aclose(self) -> None: ...


TransportT = TypeVar("TransportT", bound=_Closable)


class AsyncClient(Generic[TransportT]):
    """Use as `async with Client(...) as client:`; leaving the block closes the connections of
    `self._transport`, which the subclass sets."""

    _transport: TransportT

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._transport.aclose()
