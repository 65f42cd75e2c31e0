"""The warm pool (TENANT_WARM_POOL_SIZE) vs the DDL floor.

floor: PostgresTenantStore.create, one transaction per tenant, sequential, straight through
asyncpg (as in bench/provisioning.py). burst: N TenantRequested published at once to one
``provisioner relay`` worker whose pool holds N, every TenantProvisioned seen on tenants.events
(its leader refills meanwhile, as it would). refill: the worker's leader refilling the N it lost,
paced by the pool rows' own timestamps (one transaction per pooled schema, as many side by side
as TENANT_WARM_POOL_REFILL_CONNECTIONS), with the burst's tenants dropped only after it. paced:
100 requests at 10/s, publish -> result seen, with the pool topped up behind them.
"""

import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator

import asyncpg

from bench import common, tenants
from bench.common import Row, percentile
from bench.provisioning import _floor, _through_kafka
from bench.workers import Workers
from domain.tenant_ids import quote_ident

PACED_RATE = 10.0
REFILL_INTERVAL_S = 0.2
# The workers' catalogue upkeep looks this often, so the churn of the earlier rows is vacuumed
# as it would be in a deployment with heavy tenant churn, not left for the paced row to walk past.
CATALOG_UPKEEP_INTERVAL_S = 1.0


@contextlib.contextmanager
def _pool_env(size: int) -> Iterator[None]:
    """Workers started inside take these settings (they inherit the environment)."""
    saved = {k: os.environ.get(k) for k in ("TENANT_WARM_POOL_SIZE",
                                            "TENANT_WARM_POOL_REFILL_INTERVAL_S",
                                            "TENANT_CATALOG_UPKEEP_INTERVAL_S")}
    os.environ["TENANT_WARM_POOL_SIZE"] = str(size)
    os.environ["TENANT_WARM_POOL_REFILL_INTERVAL_S"] = str(REFILL_INTERVAL_S)
    os.environ["TENANT_CATALOG_UPKEEP_INTERVAL_S"] = str(CATALOG_UPKEEP_INTERVAL_S)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _table() -> str:
    return f"{quote_ident(common.settings().names.control_schema)}.warm_pool"


async def _wait_full(conn: asyncpg.Connection, size: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await conn.fetchval(f"SELECT count(*) FROM {_table()}") < size:  # noqa: S608
        if time.monotonic() > deadline:
            raise RuntimeError(f"the warm pool did not reach {size} in {timeout:.0f}s")
        await asyncio.sleep(0.05)


async def _refill_rate(conn: asyncpg.Connection, since: float, size: int) -> tuple[float, int]:
    """(pooled schemas made per second after ``since`` (DB epoch), how many): from their
    created_at, since each is its own transaction, the spacing of their start times is the time
    to make one."""
    await _wait_full(conn, size, 120 + size)
    times: list[float] = sorted(r[0] for r in await conn.fetch(
        f"SELECT extract(epoch FROM created_at)::float8 FROM {_table()}"  # noqa: S608
        " WHERE extract(epoch FROM created_at) > $1", since))
    if len(times) < 3:
        raise RuntimeError(f"only {len(times)} pooled schemas made after the burst: size too small")
    return (len(times) - 1) / (times[-1] - times[0]), len(times)


async def run(size: int) -> list[Row]:
    settings = common.settings()
    await tenants.ensure_control(settings)
    paced_n = min(size, 100)
    floor: list[float] = []
    burst: list[float] = []
    refill: list[float] = []
    refill_counted: list[int] = []  # schemas the refill made after the burst, per repetition
    burst_lat: list[list[float]] = []
    paced: list[list[float]] = []
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        with _pool_env(size):
            async with Workers(settings, 1):
                await _wait_full(conn, size, 120 + size)
                await _through_kafka(settings, 6, None)  # warm-up: connections, metadata, caches
                for rep in range(common.REPS):
                    await _wait_full(conn, size, 120 + size)
                    floor.append(await _floor(settings, size))
                    await _wait_full(conn, size, 120 + size)
                    # The burst's tenants are dropped once the pool is full again: dropped at
                    # once, their DROPs shared the cores with the refill measured here, which
                    # then counted only the schemas made after the clean-up (about 115 of 200).
                    burst_ids: list[str] = []
                    rate, latencies = await _through_kafka(settings, size, None, keep=burst_ids)
                    since = await conn.fetchval("SELECT extract(epoch FROM now())::float8")
                    burst.append(rate)
                    burst_lat.append(latencies)
                    refill_rate, refill_n = await _refill_rate(conn, since, size)
                    refill.append(refill_rate)
                    refill_counted.append(refill_n)
                    await common.drop_tenants_now(burst_ids)
                    paced.append((await _through_kafka(settings, paced_n, PACED_RATE))[1])
                    print(f"  rep {rep}: floor {floor[-1]:.1f}/s, burst {burst[-1]:.1f}/s"
                          f" ({burst[-1] / floor[-1]:.2f}×), refill {refill[-1]:.1f}/s"
                          f" ({refill[-1] / floor[-1]:.2f}×), paced p99"
                          f" {percentile(paced[-1], 99) * 1000:.0f} ms", flush=True)
    finally:
        await conn.close()
    flat_burst = [x for rep in burst_lat for x in rep]
    flat_paced = [x for rep in paced for x in rep]
    p99s = [percentile(p, 99) * 1000 for p in paced]
    return [
        Row("warm pool burst", f"{size} tenants, pool {size}, 1 proc", "tenants/s", burst,
            floor, "floor (direct DDL)", goal="≥ 3 × floor",
            met=statistics.median(burst) >= 3 * statistics.median(floor),
            notes=f"burst latency p50 {percentile(flat_burst, 50):.2f}s"
                  f" p99 {percentile(flat_burst, 99):.2f}s; the leader refills meanwhile"),
        Row("warm pool refill", f"{size} pooled schemas", "schemas/s", refill, floor,
            "floor (direct DDL)", goal="≈ floor",
            met=statistics.median(refill) >= 0.9 * statistics.median(floor),
            notes="leader refill after the burst, one transaction per schema,"
                  f" {settings.warm_pool_refill_connections} side by side"
                  " (TENANT_WARM_POOL_REFILL_CONNECTIONS); schemas made after the burst's last"
                  f" result: {', '.join(map(str, refill_counted))} of {size}"),
        Row("warm pool paced", f"{paced_n} at 10/s, pool {size}, 1 proc", "p99 latency ms", p99s,
            [], higher_is_better=False, goal="p99 ≤ 50 ms", met=statistics.median(p99s) <= 50,
            notes=f"event→result p50 {percentile(flat_paced, 50) * 1000:.0f} ms"
                  f" p95 {percentile(flat_paced, 95) * 1000:.0f} ms"),
    ]


if __name__ == "__main__":
    common.save("warm_pool", asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200)))
