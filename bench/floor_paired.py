"""Our consumer path against the batched floor, paired: each burst between two floor passes.

The unpaired rows (bench/broker_overhead.py, then bench/floor.py) measure ours and the floor
about a minute apart. On this shared 2-core machine the same code drained 3,600–7,300 events/s
within one hour, so the load's drift between the two can move their ratio more than a change of
ours does. Here each of PAIRS bursts of ours (the broker row's: N no-op ``TenantRequested``
published while the worker is stopped, timed from its resuming to the N-th result) runs between
two passes of the batched floor over N records of its own topic (a fresh consumer group and
inbox group each pass), and is divided by the mean of the two: whatever the machine's load
does, it does to the three alike. The goal is read on the median of those per-pair ratios.
"""

import os
import statistics

from bench import common, floor, tenants
from bench.broker_overhead import TENANTS, _burst, _round, _seconds
from bench.common import Row
from bench.workers import Workers

PAIRS = int(os.environ.get("BENCH_PAIRS", "5"))
GOAL = 0.25


async def measure(n: int) -> tuple[list[float], list[float]]:
    """(ours, floor) events/s: each burst of ours, and the mean of the floor passes around it."""
    settings = common.settings()
    ids = common.tenant_ids(TENANTS, "f")
    ours: list[float] = []
    floors: list[float] = []
    async with floor.filled(n) as passes:
        await tenants.create_parallel(settings, ids, tenants.latest_steps())
        try:
            async with Workers(settings, 1) as workers:
                await _round(settings, ids, 20 / _seconds())  # warm-up, as the broker row's
                for k in range(PAIRS):
                    before = await passes.run("per batch", 2 * k)
                    ours.append(await _burst(settings, ids, n, workers.pids))
                    after = await passes.run("per batch", 2 * k + 1)
                    floors.append((before + after) / 2)
                    print(
                        f"  pair {k}: floor {before:.0f}/s, ours {ours[-1]:.0f}/s,"
                        f" floor {after:.0f}/s: {ours[-1] / floors[-1]:.2f}",
                        flush=True,
                    )
        finally:
            await common.drop_tenants_now(ids)
    return ours, floors


def row(n: int, ours: list[float], floors: list[float]) -> Row:
    """The pairs' ratios as the row's figures (so its min / median are theirs), each burst and
    floor in the notes."""
    ratios = [o / f for o, f in zip(ours, floors, strict=True)]
    median = statistics.median(ratios)
    return Row(
        "consumer path ÷ floor, paired",
        f"ours {n} events at once vs per batch",
        "ours ÷ floor per pair",
        ratios,
        goal=f"≥ {GOAL} × batched floor (median of pairs)",
        met=median >= GOAL,
        notes=f"each burst of ours between two batched floor passes of {n} records;"
        f" ours {', '.join(f'{o:.0f}' for o in ours)} events/s against the floor passes'"
        f" means {', '.join(f'{f:.0f}' for f in floors)} events/s:"
        f" per-pair ratios {', '.join(f'{r:.2f}' for r in ratios)}, median {median:.2f}",
    )
