"""The circuit breaker's state machine, driven by an injected clock."""

from domain.circuit_breaker import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state(breaker: CircuitBreaker) -> CircuitState:
    """Read through a call: the state changes with the clock, which mypy can't see."""
    return breaker.state


def _breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, reset_timeout_s=10.0, clock=clock)


def test_stays_closed_below_the_threshold_and_a_success_resets_the_count() -> None:
    breaker = _breaker(Clock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert state(breaker) == CircuitState.CLOSED and breaker.retry_after() == 0.0


def test_opens_at_the_threshold_and_counts_down() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.record_failure()
    assert state(breaker) == CircuitState.OPEN and breaker.retry_after() == 10.0
    clock.now += 4
    assert state(breaker) == CircuitState.OPEN and breaker.retry_after() == 6.0


def test_half_open_after_the_timeout_then_a_success_closes() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 10
    assert state(breaker) == CircuitState.HALF_OPEN and breaker.retry_after() == 0.0
    breaker.record_success()
    assert state(breaker) == CircuitState.CLOSED
    breaker.record_failure()
    assert state(breaker) == CircuitState.CLOSED  # the count started again from zero


def test_a_failed_trial_call_opens_it_again_for_a_full_timeout() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 12
    assert state(breaker) == CircuitState.HALF_OPEN
    breaker.record_failure()
    assert state(breaker) == CircuitState.OPEN and breaker.retry_after() == 10.0
    clock.now += 9.5
    assert state(breaker) == CircuitState.OPEN
    clock.now += 0.5
    assert state(breaker) == CircuitState.HALF_OPEN
