"""Worker subprocesses (``tenantctl run <roles>`` in the run's namespace) and result watching."""

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from adapters.kafka.event_reader import EventReader, topic_partitions
from adapters.kafka.producer import KafkaEventPublisher
from bench.common import REPO, RESULTS
from contracts import topics
from contracts.codec import read_envelope
from contracts.envelope import Envelope
from runtime.settings import Settings

LOGS = RESULTS / "logs"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    """``tenantctl run <roles>`` in the run's namespace (TENANT_NAMESPACE, inherited)."""

    def __init__(self, roles: Sequence[str], name: str) -> None:
        self.roles, self.port = list(roles), _free_port()
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{name}.log"
        env = {**os.environ, "TENANT_HTTP_PORT": str(self.port)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tenantctl.cli", "run", *self.roles], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=self.log_path.open("wb"),
        )

    async def ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.roles} exited; see {self.log_path}")
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await reader.read(64)
                writer.close()
                if b" 200 " in head:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"worker {self.roles} not ready in {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Workers:
    """One ``provisioner relay`` (exactly one relay) plus ``extra`` provisioner-only processes;
    with ``relay_apart``, the relay runs in a process of its own (as a deployment may run it:
    one relay leads at a time, however many workers consume)."""

    def __init__(self, settings: Settings, provisioners: int,
                 first: Iterable[str] = ("provisioner", "relay"), group: str | None = None,
                 *, relay_apart: bool = False) -> None:
        self.settings, self.count = settings, provisioners
        self.relay_apart = relay_apart
        self.first = [r for r in first if r != "relay"] if relay_apart else list(first)
        self.group = group or topics.PROVISIONER_GROUP
        self.procs: list[Worker] = []

    async def __aenter__(self) -> "Workers":
        stamp = time.strftime("%H%M%S")
        self.procs.append(Worker(self.first, f"{stamp}-w0"))
        for i in range(1, self.count):
            self.procs.append(Worker(["provisioner"], f"{stamp}-w{i}"))
        if self.relay_apart:
            self.procs.append(Worker(["relay"], f"{stamp}-relay"))
        try:
            await asyncio.gather(*(p.ready() for p in self.procs))
            # every process runs TENANT_CONSUMER_CONCURRENCY members of the group
            await group_settled(self.settings, self.group,
                                self.count * self.settings.consumer_concurrency)
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        for p in self.procs:
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.stop()

    @property
    def pids(self) -> list[int]:
        return [p.proc.pid for p in self.procs]


async def group_settled(settings: Settings, group: str, members: int, timeout: float = 60) -> None:
    """Wait until the group is Stable with ``members`` members, so no rebalance hits the run."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (response,) = await admin.describe_consumer_groups([settings.names.topics.group(group)])
            g = response.to_object()["groups"][0]
            if g["state"] == "Stable" and len(g["members"]) == members:
                return
            await asyncio.sleep(0.25)
        raise RuntimeError(f"group {group} did not settle with {members} members")
    finally:
        await admin.close()


class Results:
    """Every event on tenants.events from entry on, with the perf_counter time it was seen."""

    def __init__(self, settings: Settings) -> None:
        self._reader = EventReader(settings.kafka)
        self.seen: dict[str, tuple[float, Envelope]] = {}  # by causation id
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> "Results":
        await self._reader.__aenter__()
        self._task = asyncio.create_task(self._pump())
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._reader.__aexit__(et, e, tb)

    async def _pump(self) -> None:
        async for env in self._reader:
            if env.causationid and env.causationid not in self.seen:
                self.seen[env.causationid] = (time.perf_counter(), env)
                self._changed.set()

    async def wait_for(self, ids: Iterable[str], timeout: float) -> dict[str, tuple[float, Envelope]]:
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while not wanted <= self.seen.keys():
            left = deadline - time.monotonic()
            if left <= 0:
                missing = len(wanted - self.seen.keys())
                raise RuntimeError(f"{missing} of {len(wanted)} results missing after {timeout}s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
        return {i: self.seen[i] for i in wanted}


class ResultCount:
    """How many results landed on tenants.events since entry, from its end offsets: the bench
    reads no record while it times, so its own CPU stays off the cores the worker needs. What
    landed is read (untimed) afterwards by ``causations``, to check every event was answered."""

    POLL_S = 0.01

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.kafka.topics.events
        self._consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                          group_id=None, enable_auto_commit=False)
        self._start: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> "ResultCount":
        await self._consumer.start()
        try:
            parts = await topic_partitions(self._consumer, self._topic)
        except RuntimeError:
            await self._consumer.stop()
            raise
        # Not assigned until ``causations``: an assigned consumer fetches records in the background.
        self._start = await self._consumer.end_offsets(parts)
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._consumer.stop()

    async def wait_count(self, n: int, timeout: float) -> float:
        """The perf_counter time at which ``n`` results had landed (polled every POLL_S)."""
        deadline = time.monotonic() + timeout
        while True:
            ends = await self._consumer.end_offsets(list(self._start))
            landed = sum(ends[tp] - first for tp, first in self._start.items())
            if landed >= n:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n - landed} of {n} results missing after {timeout}s")
            await asyncio.sleep(self.POLL_S)

    async def causations(self) -> set[str]:
        """The causation ids of every result landed since entry (reads them all)."""
        ends = await self._consumer.end_offsets(list(self._start))
        self._consumer.assign(list(self._start))
        for tp, first in self._start.items():
            self._consumer.seek(tp, first)
        seen: set[str] = set()
        while [tp for tp, end in ends.items() if await self._consumer.position(tp) < end]:
            for records in (await self._consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    env = read_envelope(r.value or b"", r.headers or ())
                    if env.causationid:
                        seen.add(env.causationid)
        return seen


async def publisher(settings: Settings) -> KafkaEventPublisher:
    pub = KafkaEventPublisher(settings.kafka, client_id="bench")
    await pub.start()
    return pub


def log_dir() -> Path:
    return LOGS
