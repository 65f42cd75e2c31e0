"""The worker only assembles what the bootstrap and the role builders return: on fakes, no stack.

Roles get the one shared Resources value; their loops run; readiness asks the shared checks and
every role's breakers; stop stops deliveries, then the broker, then the loops, then closes in
reverse order of opening (the role's closers before the shared resources')."""

import asyncio
from typing import Any, cast

import pytest

from domain.circuit_breaker import CircuitState
from runtime import worker as worker_module
from runtime.bootstrap import Closer, Resources, RoleParts
from runtime.settings import Settings
from runtime.worker import Worker
from tests.support.waiting import wait_until


class FakeBroker:
    subscribers: list[Any] = []

    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def start(self) -> None:
        self.events.append("broker start")

    async def stop(self) -> None:
        self.events.append("broker stop")


class FakeDelivery:
    def __init__(self, group: str, events: list[str]) -> None:
        self.group, self.events = group, events
        self.breaker = type("Breaker", (), {"state": CircuitState.CLOSED})()

    async def stop(self) -> None:
        self.events.append(f"stop {self.group}")


class FakeLoop:
    def __init__(self, name: str, events: list[str]) -> None:
        self.name, self.events = name, events
        self._stop = asyncio.Event()
        self.running = False

    async def run(self) -> None:
        self.running = True
        await self._stop.wait()
        self.events.append(f"{self.name} ended")

    def stop(self) -> None:
        self._stop.set()


def _closer(name: str, events: list[str]) -> Closer:
    async def close() -> None:
        events.append(f"close {name}")

    return close


async def test_the_worker_runs_and_stops_what_the_roles_return(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    settings = Settings(pg_dsn="postgresql://u:p@127.0.0.1:1/db", http_port=0)  # type: ignore[arg-type]

    async def ready() -> None: ...

    resources = Resources(
        settings=settings,
        pool=cast(Any, None),
        publisher=cast(Any, None),
        broker=cast(Any, FakeBroker(events)),
        redis=cast(Any, None),
        outbox=cast(Any, None),
        checks={"postgres": ready},
    )

    async def fake_build_resources(s: Settings, closers: list[Closer]) -> Resources:
        assert s is settings
        closers.append(_closer("shared", events))
        return resources

    given: list[Resources] = []
    loops = {"a": FakeLoop("loop a", events), "b": FakeLoop("loop b", events)}
    deliveries = {"a": FakeDelivery("group-a", events)}

    def builder(role: str) -> Any:
        async def build(res: Resources) -> RoleParts:
            given.append(res)
            return RoleParts(
                deliveries=cast(Any, (deliveries[role],) if role in deliveries else ()),
                background=(loops[role],),
                closers=(_closer(role, events),),
            )

        return build

    monkeypatch.setattr(worker_module, "build_resources", fake_build_resources)
    monkeypatch.setattr(worker_module, "ROLE_BUILDERS", {"a": builder("a"), "b": builder("b")})

    worker = Worker(settings, ["a", "b"])
    await worker.start()
    try:
        assert given == [resources, resources]
        await wait_until(lambda: all(loop.running for loop in loops.values()), 5, what="loops")
        await worker._probe_circuits()  # closed breakers: ready
        deliveries["a"].breaker.state = CircuitState.OPEN
        with pytest.raises(RuntimeError, match="group-a"):
            await worker._probe_circuits()
    finally:
        worker.request_stop()  # as SIGTERM does: loops that end now are not a failure
        await worker.stop()

    assert events[:3] == ["broker start", "stop group-a", "broker stop"]
    assert sorted(events[3:5]) == ["loop a ended", "loop b ended"]
    assert events[5:] == ["close b", "close a", "close shared"]
    assert not worker.failed and worker.abandoned_steps == 0
