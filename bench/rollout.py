"""Migration rollout: M tenants one version behind -> ``tenantctl migrate`` -> all at latest.

ours: tenantctl.lifecycle_ops.rollout (TenantMigrationDue per tenant through Kafka, one
provisioner+relay process, results followed on tenants.events). floor: the same
PostgresTenantStore.migrate, one transaction per tenant (tenant lock + migrate), sequential,
on a second set of M tenants. no-op: rollout again with every tenant at the target.
The tenants are made cheaply at the version before the latest (fixture, not timed).
"""

import asyncio
import io
import statistics
import sys

import asyncpg
from rich.console import Console

from adapters.postgres.tenant_store import tenant_lock_sql
from bench import common, tenants
from bench.common import Row
from bench.workers import Workers
from domain.migrations import plan_migrations
from tenantctl.lifecycle_ops import rollout


async def _floor(settings, ids: list[str], steps) -> float:  # type: ignore[no-untyped-def]
    store = tenants.store(settings)
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        clock = common.Clock()
        for tid in ids:
            async with conn.transaction():
                await conn.execute(tenant_lock_sql(tid))
                await store.get(conn, tid)
                await store.migrate(conn, tid, steps)
        return len(ids) / clock.elapsed
    finally:
        await conn.close()


async def run(size: int) -> list[Row]:
    settings = common.settings()
    await tenants.ensure_control(settings)
    template = tenants.latest_steps()
    before, upgrade = template[:-1], template[-1:]
    upgrade_plan = plan_migrations(template, len(before))
    quiet = Console(file=io.StringIO())
    ours: list[float] = []
    floor: list[float] = []
    noop: list[float] = []
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        async with Workers(settings, 1):
            for rep in range(common.REPS):
                mine, base = common.tenant_ids(size, "m"), common.tenant_ids(size, "b")
                await tenants.create_parallel(settings, mine + base, before)
                await conn.execute(  # only ``mine`` is due in this namespace's registry
                    f"UPDATE {tenants.store(settings).table} SET schema_version = $1"
                    " WHERE tenant_id = ANY($2::text[])", upgrade_plan.target, base)
                clock = common.Clock()
                summary = await rollout(settings, quiet, None, 0, size, 600)
                ours.append(size / clock.elapsed)
                if summary["migrated"] != size:
                    raise RuntimeError(f"rollout incomplete: {summary}")
                await conn.execute(
                    f"UPDATE {tenants.store(settings).table} SET schema_version = $1"
                    " WHERE tenant_id = ANY($2::text[])", len(before), base)
                floor.append(await _floor(settings, base, list(upgrade_plan.steps)))
                clock = common.Clock()
                summary = await rollout(settings, quiet, None, 0, size, 600)
                noop.append(clock.elapsed)
                assert summary["tenants"] == 0, summary
                print(f"  rep {rep}: rollout {ours[-1]:.1f}/s, floor {floor[-1]:.1f}/s,"
                      f" no-op {noop[-1]:.3f}s", flush=True)
                await common.drop_tenants(conn, mine + base)
    finally:
        await conn.close()
    step = f"v{len(before)}→v{upgrade_plan.target} ({upgrade[0].name})"
    return [
        Row("migration rollout", f"{size} tenants, {step}", "tenants/s", ours, floor,
            "floor (direct migrate)", goal="≥ 100 tenants/s",
            met=statistics.median(ours) >= 100, notes="tenantctl migrate via lifecycle_ops.rollout"),
        Row("migration no-op", f"{size} tenants at target", "s", noop, [],
            higher_is_better=False, goal="≤ 2 s", met=statistics.median(noop) <= 2.0,
            notes="rollout() with nothing due"),
    ]


if __name__ == "__main__":
    common.save("rollout", asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)))
