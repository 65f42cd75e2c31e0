"""Bookkeeping size over many metrics ticks: with retention (ours) vs without (baseline).

Two control schemas built by the real control migrations receive the same writes per tick, as a
metrics tick over N tenants leaves them: one inbox row (the MetricsDue), N published outbox rows
(one TenantMetricsCollected per tenant), a finished backup job with a rider, a drill report. Ticks
come every ``TICK_S`` of real time; after each tick the pruned schema gets one round of
``producers.retention.Retention.prune_once`` (the leader's round) with every age = ``KEEP_TICKS``
ticks. Figure: rows in the five tables after the last tick (lower is better); the notes show the
rows along the run, flat for ours once the first ``KEEP_TICKS`` ticks have aged, growing for the
baseline. The prune round's time per tick is reported too (it is the cost of staying flat).
"""

import asyncio
import statistics
import time

import asyncpg

from adapters.postgres.control_schema import ensure_control_schema
from adapters.postgres.retention import PostgresRetention
from bench import common
from bench.common import Row
from producers.retention import Retention

TICKS = 24
TICK_S = 0.5
KEEP_TICKS = 3
_TABLES = ("inbox", "outbox", "backup_jobs", "backup_job_riders", "restore_drills")


async def _tick(conn: asyncpg.Connection, schema: str, tick: int, tenants: int) -> None:
    tag = f"t{tick}"
    async with conn.transaction():
        await conn.execute(
            f"INSERT INTO {schema}.inbox (consumer_group, event_id, event_type) VALUES"
            " ('tenant-metrics', $1, 'MetricsDue')",
            tag,
        )
        await conn.execute(
            f"INSERT INTO {schema}.outbox (event_id, topic, key, event_type, payload)"
            " SELECT $1 || '-' || i, 'tenants.events', convert_to('tenant-' || i, 'UTF8'),"
            " 'TenantMetricsCollected', convert_to(repeat('x', 400), 'UTF8')"
            " FROM generate_series(1, $2) i",
            tag,
            tenants,
        )
        # Sent: the relay has dequeued them.
        await conn.execute(f"TRUNCATE {schema}.outbox_pending")
        await conn.execute(
            f"INSERT INTO {schema}.backup_jobs (job_id, kind, tenant_id, cause_id, correlation_id,"
            " status) VALUES ($1, 'backup', 't', $1, 'c', 'succeeded')",
            tag,
        )
        await conn.execute(
            f"INSERT INTO {schema}.backup_job_riders (cause_id, job_id, correlation_id)"
            " VALUES ($1 || '-rider', $1, 'c')",
            tag,
        )
        await conn.execute(
            f"INSERT INTO {schema}.restore_drills (backup_id, tenant_id, ok, report)"
            " VALUES ($1, 't', true, '{}')",
            tag,
        )


async def _rows(conn: asyncpg.Connection, schema: str) -> int:
    sizes = await PostgresRetention(schema).sizes(conn)
    return sum(sizes[t] for t in _TABLES)


async def _once(conn: asyncpg.Connection, pool: asyncpg.Pool, tenants: int, rep: int) -> dict:  # type: ignore[type-arg]
    # Scratch control schemas in the bench's namespace (TENANT_NAMESPACE, bench/run).
    base = common.settings()
    scratch = {
        name: base.model_copy(update={"control_schema": f"bench_ret{rep}_{name}"})
        for name in ("pruned", "kept")
    }
    pruned, kept = (scratch[n].names.control_schema for n in ("pruned", "kept"))
    for schema in (pruned, kept):
        await ensure_control_schema(
            conn, schema, base.names.app_role, api_reader_role=base.names.api_reader_role
        )
    keep_s = KEEP_TICKS * TICK_S
    retention = Retention(
        scratch["pruned"].model_copy(
            update={
                "retention_batch_size": 1_000,
                # the inbox floor follows the event age limit; shrink both to the bench's scale
                "event_max_age_s": keep_s,
                "event_max_future_s": 0.0,
                "inbox_retention_s": None,
                **{f"{t}_retention_s": keep_s for t in ("outbox", "jobs", "drills", "ticks")},
            }
        ),
        pool,
        PostgresRetention(pruned),
    )
    along: dict[str, list[int]] = {"ours": [], "baseline": []}
    prune_s: list[float] = []
    try:
        for tick in range(TICKS):
            started = time.monotonic()
            for schema in (pruned, kept):
                await _tick(conn, schema, tick, tenants)
            clock = common.Clock()
            await retention.prune_once()
            prune_s.append(clock.elapsed)
            along["ours"].append(await _rows(conn, pruned))
            along["baseline"].append(await _rows(conn, kept))
            await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - started)))
    finally:
        for schema in (pruned, kept):
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return {"along": along, "prune_s": prune_s}


async def run(tenants: int) -> list[Row]:
    """``tenants`` outbox rows per tick, ``TICKS`` ticks, ``common.REPS`` repetitions."""
    conn = await asyncpg.connect(common.dsn())
    pool = await asyncpg.create_pool(common.dsn(), min_size=1, max_size=2)
    assert pool is not None
    results = []
    try:
        for rep in range(common.REPS):
            results.append(await _once(conn, pool, tenants, rep))
    finally:
        await pool.close()
        await conn.close()
    ours = [float(r["along"]["ours"][-1]) for r in results]
    baseline = [float(r["along"]["baseline"][-1]) for r in results]
    marks = sorted({TICKS // 4, TICKS // 2, 3 * TICKS // 4, TICKS - 1})
    last = results[-1]["along"]
    along = ", ".join(f"tick {m + 1}: {last['ours'][m]} vs {last['baseline'][m]}" for m in marks)
    prune = statistics.median(s for r in results for s in r["prune_s"])
    return [
        Row(
            "retention",
            f"{TICKS} ticks × {tenants} outbox rows, kept {KEEP_TICKS} ticks",
            "rows after last tick",
            ours,
            baseline,
            "no pruning (same writes)",
            higher_is_better=False,
            goal="flat over ticks",
            met=last["ours"][-1] <= last["ours"][TICKS // 2],
            notes=f"rows ours vs baseline at {along}; prune round median {prune * 1000:.0f} ms",
        )
    ]
