"""``bench/run [NAME [SIZE]]``: run the benchmarks, then write results/latest.md and .png.

NAME: all (default: 200 / 300 / 1,000 / 100 MB / 1,000 events/s for 2 s: ~10 minutes here),
full (500 / 1,000 / 1,000+5,000 / 300 MB / 1,000 events/s for 10 s; ~40 min),
small (development sizes), or one of provisioning, rollout, metrics, backup, restore, broker,
warm_pool.
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
    metrics_tick,
    provisioning,
    report,
    restore,
    retention,
    rollout,
    warm_pool,
)
from domain.tenant_ids import quote_ident

FULL = {"provisioning": 500, "rollout": 1000, "metrics": 0, "backup": 300, "broker": 1000,
        "retention": 10_000, "api": 30, "warm_pool": 500}
DEFAULT = {"provisioning": 200, "rollout": 300, "metrics": 1000, "backup": 100, "broker": 1000,
           "retention": 1000, "api": 30, "warm_pool": 200}
SMALL = {"provisioning": 20, "rollout": 20, "metrics": 100, "backup": 10, "broker": 100,
         "retention": 100, "api": 10, "warm_pool": 20}
SINGLE = {"provisioning": provisioning.run, "rollout": rollout.run, "migration": rollout.run,
          "metrics": metrics_tick.run, "backup": backup.run, "restore": restore.run,
          "broker": broker_overhead.run, "retention": retention.run, "api": api.run,
          "warm_pool": warm_pool.run}
FILES = {"migration": "rollout", "metrics": "metrics_tick", "broker": "broker_overhead"}


async def _backup_and_restore(size: int) -> None:
    fx = await backup.fixture(size)
    try:
        common.save("backup", await backup.measure(fx))
        common.save("restore", await restore.measure(fx))
    finally:
        await backup.dispose(fx)


async def _all(sizes: dict[str, int]) -> None:
    for name in ("provisioning", "rollout", "metrics"):
        print(f"== {name} {sizes[name] or ''}", flush=True)
        common.save(FILES.get(name, name), await SINGLE[name](sizes[name]))
    print(f"== backup + restore {sizes['backup']} MB", flush=True)
    await _backup_and_restore(sizes["backup"])
    print(f"== broker {sizes['broker']}/s", flush=True)
    common.save("broker_overhead", await broker_overhead.run(sizes["broker"]))
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
        elif name in SINGLE:
            size = int(argv[1]) if len(argv) > 1 else FULL.get(name, FULL["backup"])
            common.save(FILES.get(name, name), await SINGLE[name](size))
        else:
            raise SystemExit(f"unknown benchmark {name!r}; choose from all, full, small, "
                             + ", ".join(SINGLE))
    finally:
        await cleanup()
    report.write()
    print(f"bench {name} took {time.monotonic() - started:.0f}s;"
          f" wrote {report.MARKDOWN} and {report.CHART}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
