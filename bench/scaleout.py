"""Scale-out: the broker round trip with 2 worker processes against 1, on the same work.

The no-op ``TenantRequested`` round trip of bench/broker_overhead.py (consume → inbox →
registry read → outbox → relay → ``tenants.events``), a burst of ``size`` events published at
once and drained (the broker burst row's work: an offered rate both keep up with would show
nothing): 1 process (``provisioner relay``) against 2 (plus one ``provisioner``),
alternated per repetition, each with fresh processes and a warm-up round. The CPU seconds of
every process group over the measured round (bench/cpu.py) say what bounds it on this machine:
the sum of all groups against 2 cores × wall time.
"""

import asyncio
import os
import statistics
import sys

import asyncpg

from bench import common, cpu, tenants
from bench.broker_overhead import TENANTS, _burst, _round, _seconds
from bench.common import Row
from bench.workers import Workers

CORES = os.cpu_count() or 1


async def _once(settings, ids: list[str], procs: int,  # type: ignore[no-untyped-def]
                size: int) -> tuple[float, dict[str, float], float, float]:
    """(events/s, CPU s per group, wall s, machine CPU s) of one burst's drain."""
    async with Workers(settings, procs) as workers:
        await _round(settings, ids, 20 / _seconds())  # warm-up: connections, statements, caches
        groups = cpu.with_stack({f"worker {i + 1}": [pid] for i, pid in enumerate(workers.pids)})
        drain = cpu.CpuMeter(groups)  # the timed part alone: not the publishing, not the check
        got = await _burst(settings, ids, size, workers.pids, drain)
        return got, drain.seconds, drain.wall, drain.machine


async def run(size: int) -> list[Row]:
    settings = common.settings()
    await tenants.ensure_control(settings)
    ids = common.tenant_ids(TENANTS, "s")
    await tenants.create_parallel(settings, ids, tenants.latest_steps())
    got: dict[int, list[float]] = {1: [], 2: []}
    cpu_s: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    busy: dict[int, list[float]] = {1: [], 2: []}
    machine: dict[int, list[float]] = {1: [], 2: []}
    events = size
    try:
        for rep in range(common.REPS):
            for procs in (1, 2):
                per_s, seconds, wall, everyone = await _once(settings, ids, procs, size)
                got[procs].append(per_s)
                cpu_s[procs].append(seconds)
                busy[procs].append(sum(seconds.values()) / wall)
                machine[procs].append(everyone / wall)
                print(f"  rep {rep} {procs} proc: {per_s:.0f}/s, ours busy"
                      f" {busy[procs][-1]:.2f} of {CORES} cores, machine {machine[procs][-1]:.2f};"
                      f" {cpu.split(seconds, events)}", flush=True)
    finally:
        conn = await asyncpg.connect(common.dsn())
        try:
            await common.drop_tenants(conn, ids)
        finally:
            await conn.close()

    def median_split(procs: int) -> str:
        keys = cpu_s[procs][0].keys()
        return cpu.split({k: statistics.median(s[k] for s in cpu_s[procs]) for k in keys}, events)

    return [Row(
        "scale-out", f"broker burst of {size}, 2 procs vs 1",
        "events/s drained", got[2], got[1], "1 worker process", goal="scales with procs",
        notes=f"{CORES} cores; while draining, CPU busy (ours: workers + stack + bench) median"
              f" {statistics.median(busy[1]):.2f} at 1 proc, {statistics.median(busy[2]):.2f}"
              f" at 2; the machine (everyone's) {statistics.median(machine[1]):.2f} and"
              f" {statistics.median(machine[2]):.2f}; CPU per event at 1 proc: {median_split(1)};"
              f" at 2 procs: {median_split(2)}",
    )]


if __name__ == "__main__":
    common.save("scaleout", asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)))
