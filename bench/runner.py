"""``bench/run [NAME [SIZE]]``: run the benchmarks, then write results/latest.md and .png.

NAME: all (default: 200 / 1,000 / 1,000 / 100 MB / 1,000 events/s for 2 s: ~10 minutes here),
full (500 / 1,000 / 1,000+5,000 / 300 MB / 1,000 events/s for 10 s; ~40 min),
small (development sizes), or one of provisioning, rollout, metrics, backup, restore, broker,
warm_pool, floor (the plain aiokafka + asyncpg floor, then the broker round trip against it, and
bursts of ours each between two floor passes: bench/floor_paired.py), scaleout
(the broker round trip on 2 worker processes against 1), profile (py-spy on the consumer path;
writes results/consumer_profile.md, no table row).
Each run gets its own namespace (topics, groups, control schema, relay lock), removed at the end
together with every tenant it made.
"""

import asyncio
import os
import sys
import time

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from bench import (
    api,
    backup,
    broker_overhead,
    common,
    floor,
    floor_paired,
    metrics_tick,
    provisioning,
    report,
    restore,
    retention,
    rollout,
    scaleout,
    warm_pool,
)
from bench import profile as consumer_profile
from domain.tenant_ids import quote_ident

FULL = {"provisioning": 500, "rollout": 1000, "metrics": 0, "backup": 300, "broker": 1000,
        "retention": 10_000, "api": 30, "warm_pool": 500, "floor": 20_000, "scaleout": 20_000}
DEFAULT = {"provisioning": 200, "rollout": 1000, "metrics": 1000, "backup": 100, "broker": 1000,
           "retention": 1000, "api": 30, "warm_pool": 200, "floor": 10_000, "scaleout": 10_000}
SMALL = {"provisioning": 20, "rollout": 20, "metrics": 100, "backup": 10, "broker": 100,
         "retention": 100, "api": 10, "warm_pool": 20, "floor": 2000, "scaleout": 1000}
SINGLE = {"provisioning": provisioning.run, "rollout": rollout.run, "migration": rollout.run,
          "metrics": metrics_tick.run, "backup": backup.run, "restore": restore.run,
          "broker": broker_overhead.run, "retention": retention.run, "api": api.run,
          "warm_pool": warm_pool.run, "scaleout": scaleout.run}
FILES = {"migration": "rollout", "metrics": "metrics_tick", "broker": "broker_overhead"}
# ``floor N``: N records for the floor; the broker round trip it is compared with runs at this.
BROKER_RATE = int(os.environ.get("BENCH_BROKER_RATE", "1000"))


async def _backup_and_restore(size: int) -> None:
    fx = await backup.fixture(size)
    try:
        common.save("backup", await backup.measure(fx))
        common.save("restore", await restore.measure(fx))
    finally:
        await backup.dispose(fx)


async def _broker_and_floor(rate: int, records: int) -> None:
    """Our consumer path (the broker round trip), then the floor, in the same run: the ratios."""
    print(f"== broker {rate}/s", flush=True)
    broker = await broker_overhead.run(rate)
    common.save("broker_overhead", broker)
    print(f"== floor {records} records", flush=True)
    figures = await floor.measure(records)
    rows = floor.rows(records, figures, broker[1].ours, broker[1].size, apart=broker[2].ours)
    n = broker_overhead.burst_size()
    print(f"== floor paired: {floor_paired.PAIRS} bursts of {n}, each between floor passes",
          flush=True)
    rows.append(floor_paired.row(n, *await floor_paired.measure(n)))
    common.save("floor", rows)


async def _all(sizes: dict[str, int]) -> None:
    for name in ("provisioning", "rollout", "metrics"):
        print(f"== {name} {sizes[name] or ''}", flush=True)
        common.save(FILES.get(name, name), await SINGLE[name](sizes[name]))
    print(f"== backup + restore {sizes['backup']} MB", flush=True)
    await _backup_and_restore(sizes["backup"])
    await _broker_and_floor(sizes["broker"], sizes["floor"])
    print(f"== scale-out burst of {sizes['scaleout']}", flush=True)
    common.save("scaleout", await scaleout.run(sizes["scaleout"]))
    print(f"== retention {sizes['retention']} rows per tick", flush=True)
    common.save("retention", await retention.run(sizes["retention"]))
    print(f"== api {sizes['api']} commands", flush=True)
    common.save("api", await api.run(sizes["api"]))
    print(f"== warm pool {sizes['warm_pool']} tenants", flush=True)
    common.save("warm_pool", await warm_pool.run(sizes["warm_pool"]))


async def cleanup() -> None:
    """Every tenant of this namespace, its control schema, its topics."""
    settings = common.settings()
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        dropped = await common.drop_leftovers(conn)
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(settings.names.control_schema)} CASCADE")
        for (name,) in await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_restore\\_%'"):
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        mine = [t for t in settings.names.topics.all if t in existing]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()
    print(f"cleaned up namespace {settings.namespace} ({dropped} leftover tenants)", flush=True)


async def main(argv: list[str]) -> None:
    name = argv[0] if argv else "all"
    started = time.monotonic()
    try:
        if name in ("all", "full", "small"):
            if name == "all":  # 1,000/s offered for 2 s: the backlog, not the offer, sets the time
                os.environ.setdefault("BENCH_BROKER_SECONDS", "2")
            await _all({"all": DEFAULT, "full": FULL, "small": SMALL}[name])
        elif name == "floor":
            os.environ.setdefault("BENCH_BROKER_SECONDS", "2")
            await _broker_and_floor(BROKER_RATE, int(argv[1]) if len(argv) > 1 else FULL["floor"])
        elif name == "profile":
            os.environ.setdefault("BENCH_BROKER_SECONDS", "2")
            await consumer_profile.run(int(argv[1]) if len(argv) > 1 else BROKER_RATE)
        elif name in SINGLE:
            size = int(argv[1]) if len(argv) > 1 else FULL.get(name, FULL["backup"])
            common.save(FILES.get(name, name), await SINGLE[name](size))
        else:
            raise SystemExit(f"unknown benchmark {name!r}; choose from all, full, small, floor,"
                             " profile, " + ", ".join(SINGLE))
    finally:
        await cleanup()
    report.write()
    print(f"bench {name} took {time.monotonic() - started:.0f}s;"
          f" wrote {report.MARKDOWN} and {report.CHART}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
