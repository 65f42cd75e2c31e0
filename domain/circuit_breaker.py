"""A circuit breaker: after repeated transient failures, stop calling a dependency for a while.

Closed -> (threshold consecutive failures) -> open -> (reset timeout) -> half-open -> one trial
call: success closes it, failure opens it again. The clock is injected, so this stays pure.
"""

import time
from collections.abc import Callable
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int,
        reset_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._reset = reset_timeout_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at >= self._reset:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def retry_after(self) -> float:
        """Seconds until a call is allowed again (0 when one is allowed now)."""
        if self.state != CircuitState.OPEN:
            return 0.0
        assert self._opened_at is not None
        return max(0.0, self._opened_at + self._reset - self._clock())

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def record_failure(self) -> None:
        self._failures += 1
        if self.state == CircuitState.HALF_OPEN or self._failures >= self._threshold:
            self._opened_at = self._clock()
