"""Broker overhead: a no-op round trip at a fixed offered load.

TenantRequested for tenants that already exist with the same plan: consume -> inbox row ->
registry read -> outbox row -> relay -> TenantProvisioned seen on tenants.events; no DDL.
Offered load ``rate`` events/s for BENCH_BROKER_SECONDS (10); one provisioner+relay process.
The ratio is achieved / offered. Then a burst: BENCH_BROKER_BURST (10,000) events published
at once while the worker is stopped, the rate they are drained at once it resumes (to the n-th
result on tenants.events, seen in its end offsets; each event's result is checked afterwards),
as the floor drains a topic filled beforehand: the consumer path's
throughput, which the floor rows compare with the plain aiokafka + asyncpg floor.
The notes give the CPU per event of every process group over
the measured rounds (bench/cpu.py): the worker, PostgreSQL, Kafka, Redis and this bench client.
"""

import asyncio
import contextlib
import os
import signal
import statistics
import sys
import time
from collections.abc import Iterator, Sequence

from bench import common, cpu, tenants
from bench.common import Row, percentile
from bench.workers import ResultCount, Results, Workers, publisher
from contracts import codec
from contracts.events import TenantRequested
from contracts.publish import record_of


def _seconds() -> float:
    return float(os.environ.get("BENCH_BROKER_SECONDS", "10"))

TICK = 0.05  # publish every 50 ms
TENANTS = 24


async def _round(settings, ids: list[str], rate: float) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    total = int(rate * _seconds())
    per_tick = max(1, round(rate * TICK))
    envs = [codec.envelope_for(TenantRequested(tenant_id=ids[i % len(ids)], plan="free"),
                               source="urn:bench") for i in range(total)]
    sent: dict[str, float] = {}
    pub = await publisher(settings)
    try:
        async with Results(settings) as results:
            start = time.perf_counter()
            for n, i in enumerate(range(0, total, per_tick)):
                await asyncio.sleep(max(0.0, start + n * TICK - time.perf_counter()))
                batch = envs[i:i + per_tick]
                now = time.perf_counter()
                sent.update((e.id, now) for e in batch)
                await pub.publish_many([record_of(e).message for e in batch])
            seen = await results.wait_for(sent, timeout=300 + total / 10)
    finally:
        await pub.stop()
    done = max(t for t, _ in seen.values())
    return total / (done - start), [seen[i][0] - sent[i] for i in sent]


def burst_size() -> int:
    return int(os.environ.get("BENCH_BROKER_BURST", "10000"))


async def _burst(settings, ids: list[str], n: int,  # type: ignore[no-untyped-def]
                 workers: Sequence[int], drain: cpu.CpuMeter | None = None) -> float:
    """``n`` events drained from a backlog, as the floor drains its topic: published while the
    ``workers`` processes are stopped (SIGSTOP, well inside the group's session timeout), timed
    from their resuming to the n-th result on tenants.events; then checked, untimed, that every
    one of the n events has its result. The bench reads no result while it times. ``drain``
    (if given) meters the CPU of exactly the timed part: not the publishing, not the check."""
    envs = [codec.envelope_for(TenantRequested(tenant_id=ids[i % len(ids)], plan="free"),
                               source="urn:bench") for i in range(n)]
    messages = [record_of(e).message for e in envs]
    pub = await publisher(settings)
    try:
        async with ResultCount(settings) as results:
            with _stopped(workers):
                for i in range(0, n, 1000):
                    await pub.publish_many(messages[i:i + 1000])
                if drain is not None:
                    drain.start()
                start = time.perf_counter()
            done = await results.wait_count(n, timeout=300 + n / 10)
            if drain is not None:
                drain.stop()
            missing = {e.id for e in envs} - await results.causations()
            if missing:  # a result counted twice stood in for one not there
                raise RuntimeError(f"{len(missing)} of {n} events have no result")
    finally:
        await pub.stop()
    return n / (done - start)


@contextlib.contextmanager
def _stopped(pids: Sequence[int]) -> Iterator[None]:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def run(rate: int) -> list[Row]:
    settings = common.settings()
    await tenants.ensure_control(settings)
    ids = common.tenant_ids(TENANTS, "o")
    await tenants.create_parallel(settings, ids, tenants.latest_steps())
    achieved: list[float] = []
    drained: list[float] = []
    drains: list[cpu.CpuMeter] = []
    lat: list[list[float]] = []
    apart: list[float] = []
    apart_drains: list[cpu.CpuMeter] = []
    try:
        async with Workers(settings, 1) as workers:
            await _round(settings, ids, 20 / _seconds())  # warm-up
            groups = cpu.with_stack({"worker": workers.pids})
            with cpu.CpuMeter(groups) as meter:
                for rep in range(common.REPS):
                    got, latencies = await _round(settings, ids, rate)
                    achieved.append(got)
                    lat.append(latencies)
                    print(f"  rep {rep}: achieved {got:.0f}/s of {rate}/s,"
                          f" p50 {percentile(latencies, 50):.2f}s"
                          f" p99 {percentile(latencies, 99):.2f}s", flush=True)
            drained, drains = await _bursts(settings, ids, workers, "burst")
        # The same bursts with the relay in a process of its own: the consumer process no
        # longer shares its event loop with the relay's reads and publishing.
        async with Workers(settings, 1, relay_apart=True) as workers:
            await _round(settings, ids, 20 / _seconds())  # warm-up
            apart, apart_drains = await _bursts(settings, ids, workers, "burst, relay apart")
    finally:
        await common.drop_tenants_now(ids)
    flat = [x for rep in lat for x in rep]
    return [Row(
        "broker overhead", f"{rate}/s offered × {_seconds():g}s", "events/s achieved", achieved,
        [float(rate)] * len(achieved), "offered load", goal="keeps up, p99 < 1 s",
        met=statistics.median(achieved) >= 0.95 * rate and percentile(flat, 99) < 1.0,
        notes=f"no-op TenantRequested; latency p50 {percentile(flat, 50):.2f}s"
              f" p95 {percentile(flat, 95):.2f}s p99 {percentile(flat, 99):.2f}s;"
              f" CPU per event: {cpu.split(meter.seconds, len(flat))}",
    ), Row(
        "broker burst", f"{burst_size()} events at once", "events/s drained", drained,
        goal="≥ 5,000/s per worker process", met=statistics.median(drained) >= 5000,
        notes="no-op TenantRequested published while the worker is stopped (SIGSTOP), as the"
              " floor's topic is filled first; its resuming → the last result on tenants.events"
              " (end offsets: no result is read while timing; each is checked afterwards);"
              " 1 worker process; while draining (the timed part alone), CPU per event:"
              f" {cpu.split(_summed(drains), burst_size() * len(drained))};"
              f" CPU busy: ours (workers + stack + bench) {_busy(drains, ours=True):.2f},"
              f" the machine (everyone's) {_busy(drains, ours=False):.2f} of {os.cpu_count()} cores",
    ), Row(
        "broker burst, relay apart", f"{burst_size()} events at once", "events/s drained", apart,
        notes="the same bursts with the relay in a process of its own (roles: provisioner |"
              " relay): 1 consumer process + the relay's; while draining, CPU per event (both"
              f" processes as worker): {cpu.split(_summed(apart_drains), burst_size() * len(apart))};"
              f" CPU busy: ours {_busy(apart_drains, ours=True):.2f}, the machine"
              f" {_busy(apart_drains, ours=False):.2f} of {os.cpu_count()} cores",
    )]


async def _bursts(settings, ids: list[str], workers: Workers,  # type: ignore[no-untyped-def]
                  label: str) -> tuple[list[float], list[cpu.CpuMeter]]:
    """REPS bursts drained by ``workers``: events/s of each, and its CPU over the drain alone."""
    groups = cpu.with_stack({"worker": workers.pids})
    drained: list[float] = []
    drains: list[cpu.CpuMeter] = []
    for rep in range(common.REPS):
        drains.append(cpu.CpuMeter(groups))
        drained.append(await _burst(settings, ids, burst_size(), workers.pids, drains[-1]))
        print(f"  {label} {rep}: {burst_size()} drained at {drained[-1]:.0f}/s;"
              f" {cpu.split(drains[-1].seconds, burst_size())}", flush=True)
    return drained, drains


def _summed(meters: Sequence[cpu.CpuMeter]) -> dict[str, float]:
    return {k: sum(m.seconds[k] for m in meters) for k in meters[0].seconds}


def _busy(meters: Sequence[cpu.CpuMeter], *, ours: bool) -> float:
    """Cores busy over the meters' walls: our process groups', or the whole machine's."""
    busy = sum(sum(m.seconds.values()) if ours else m.machine for m in meters)
    return busy / sum(m.wall for m in meters)


if __name__ == "__main__":
    common.save("broker_overhead",
                asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)))
