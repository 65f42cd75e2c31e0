"""Provisioning through Kafka vs the floor (the same DDL straight through asyncpg).

ours: N TenantRequested published at once -> every TenantProvisioned seen on tenants.events,
with 1, 2 and 4 provisioner processes (one of them also runs the relay). floor: the identical
PostgresTenantStore.create, one transaction per tenant, sequential, no Kafka/inbox/outbox.
paced: 10 requests/s, latency percentiles (publish -> result seen).
"""

import asyncio
import statistics
import sys
import time

import asyncpg

from bench import common, tenants
from bench.common import Row, percentile
from bench.workers import Results, Workers, publisher
from contracts import codec
from contracts.events import TenantRequested
from contracts.publish import record_of

PROCESSES = (1, 2, 4)
PACED_RATE = 10.0


async def _floor(settings, size: int) -> float:  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    ids = common.tenant_ids(size, "f")
    try:
        clock = common.Clock()
        await tenants.create_sequential(conn, settings, ids, tenants.latest_steps())
        rate = size / clock.elapsed
        await common.drop_tenants(conn, ids)
    finally:
        await conn.close()
    return rate


async def _through_kafka(settings, size: int, pace: float | None,  # type: ignore[no-untyped-def]
                        keep: list[str] | None = None) -> tuple[float, list[float]]:
    """(tenants/s, latencies in s) of ``size`` requests, all at once or ``pace`` per second.
    The tenants made are dropped before it returns, unless ``keep`` is given: then their ids are
    added to it, for the caller to drop when its measurement is over."""
    ids = common.tenant_ids(size, "k")
    envelopes = [codec.envelope_for(TenantRequested(tenant_id=t, plan="free"), source="urn:bench")
                 for t in ids]
    pub = await publisher(settings)
    sent: dict[str, float] = {}
    try:
        async with Results(settings) as results:
            start = time.perf_counter()
            if pace is None:
                for env in envelopes:
                    sent[env.id] = start
                await pub.publish_many([record_of(e).message for e in envelopes])
            else:
                for i, env in enumerate(envelopes):
                    await asyncio.sleep(max(0.0, start + i / pace - time.perf_counter()))
                    sent[env.id] = time.perf_counter()
                    await pub.publish_many([record_of(env).message])
            seen = await results.wait_for(sent, timeout=120 + size)
    finally:
        await pub.stop()
    failed = [e.type for _, e in seen.values() if e.type != "TenantProvisioned"]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed: {failed[:3]}")
    latencies = [seen[i][0] - sent[i] for i in sent]
    rate = size / (max(t for t, _ in seen.values()) - start)
    if keep is None:
        await common.drop_tenants_now(ids)
    else:
        keep.extend(ids)
    return rate, latencies


def _latency_note(latencies: list[list[float]]) -> str:
    flat = [x for rep in latencies for x in rep]
    return (f"latency p50 {percentile(flat, 50):.2f}s p95 {percentile(flat, 95):.2f}s"
            f" p99 {percentile(flat, 99):.2f}s")


async def run(size: int) -> list[Row]:
    settings = common.settings()
    await tenants.ensure_control(settings)
    floor: list[float] = []
    rows: list[Row] = []
    paced_n = min(size, 100)
    for procs in PROCESSES:
        ours: list[float] = []
        lat: list[list[float]] = []
        async with Workers(settings, procs):
            await _through_kafka(settings, 6, None)  # warm-up: connections, metadata, caches
            for rep in range(common.REPS):
                if procs == 1:  # the floor alternates with our runs, in the same minutes
                    floor.append(await _floor(settings, size))
                    print(f"  floor rep {rep}: {floor[-1]:.1f} tenants/s", flush=True)
                rate, latencies = await _through_kafka(settings, size, None)
                ours.append(rate)
                lat.append(latencies)
                print(f"  {procs} proc rep {rep}: {rate:.1f} tenants/s", flush=True)
            if procs == 1:
                paced = [(await _through_kafka(settings, paced_n, PACED_RATE))[1]
                         for _ in range(common.REPS)]
                p99s = [percentile(p, 99) for p in paced]
        rows.append(Row(
            "provisioning", f"{size} tenants, {procs} proc", "tenants/s", ours, list(floor),
            "floor (direct DDL)", goal="≥ 0.9 × floor" if procs == 1 else "scales with procs",
            met=(statistics.median(ours) >= 0.9 * statistics.median(floor)) if procs == 1 else None,
            notes=f"burst; {_latency_note(lat)}",
        ))
    rows.append(Row(
        "provisioning paced", f"{paced_n} at 10/s, 1 proc", "p99 latency s", p99s, [],
        higher_is_better=False, goal="p99 < 1 s", met=statistics.median(p99s) < 1.0,
        notes=_latency_note(paced),
    ))
    return rows


if __name__ == "__main__":
    common.save("provisioning", asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 500)))
