"""A debounced, in-process trigger: many webhooks in a burst become one sync request.

Webhooks only *wake* the sync (docs/architecture.md#the-webhook-inbox): what to do is read from the
ledger's inbox and the Reveni listing, so one sync run after a burst does what a run per event
would. `DebouncedTrigger` calls its action at most `delay_seconds` after the first notification
of a burst; notifications that arrive while the action runs schedule exactly one more run after
it. The action never runs twice at once and never on the notifying thread (the receiver's event
loop is not blocked).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)


class DebouncedTrigger:
    """Coalesce `notify()` calls from any thread into calls of `action` on one worker thread.

    `notify` accepts and ignores any arguments, so `trigger.notify` can be passed straight to
    `create_receiver(on_event=...)`. An exception in `action` is logged and counted; the trigger
    keeps working.
    """

    def __init__(
        self,
        action: Callable[[], object],
        delay_seconds: float = 0.5,
        *,
        name: str = "returnbridge-sync-trigger",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if delay_seconds < 0:
            raise ValueError("delay_seconds must be >= 0")
        self._action = action
        self._delay = delay_seconds
        self._clock = clock
        self._cond = threading.Condition()
        self._due: float | None = None  # when the next run starts; None: nothing requested
        self._fire_now = False
        self._running = False
        self._closed = False
        self.notifications = 0
        self.runs = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer side

    def notify(self, *_: object) -> None:
        """Ask for a run; returns at once. Ignored after `close()`."""
        with self._cond:
            if self._closed:
                log.debug("trigger closed; notification ignored")
                return
            self.notifications += 1
            if self._due is None:
                self._due = self._clock() + self._delay
                self._cond.notify_all()

    @property
    def pending(self) -> bool:
        """A run is requested and has not started yet."""
        with self._cond:
            return self._due is not None

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Start a requested run now instead of at the end of its delay, and wait until the
        trigger is idle (nothing requested, nothing running). True when idle in time."""
        with self._cond:
            if self._due is not None:
                self._fire_now = True
                self._cond.notify_all()
            return self._cond.wait_for(lambda: self._due is None and not self._running, timeout)

    def close(self, *, flush: bool = True, timeout: float | None = 10.0) -> None:
        """Stop the worker: run a pending request first when `flush`, else drop it. Waits for a
        run in progress (up to `timeout`)."""
        with self._cond:
            self._closed = True
            if self._due is not None:
                if flush:
                    self._fire_now = True
                else:
                    self._due = None
            self._cond.notify_all()
        self._thread.join(timeout)

    def __enter__(self) -> DebouncedTrigger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ the worker

    def _next_run(self) -> bool:
        """Wait until a run is due (True) or the trigger is closed with nothing due (False)."""
        with self._cond:
            while True:
                if self._due is not None:
                    remaining = self._due - self._clock()
                    if self._fire_now or remaining <= 0:
                        self._due, self._fire_now, self._running = None, False, True
                        return True
                    self._cond.wait(remaining)
                elif self._closed:
                    return False
                else:
                    self._cond.wait()

    def _work(self) -> None:
        while self._next_run():
            failed = False
            try:
                self._action()
            except Exception:
                failed = True
                log.exception("sync trigger action failed")
            finally:
                with self._cond:
                    self._running = False
                    self.runs += 1
                    self.failures += int(failed)
                    self._cond.notify_all()
