"""Migration rollouts as events: canary, per-tenant failures, halting, no-op, lock timeouts,
many tenants in one batch transaction. The provisioner group is the session worker's."""

import asyncio
import functools
import io
import secrets
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest
from rich.console import Console

from adapters.kafka.producer import KafkaEventPublisher
from adapters.migration_files import load_migrations
from adapters.postgres.tenant_store import tenant_lock_sql
from contracts import topics
from contracts.envelope import Envelope
from contracts.events import TenantDeactivated, TenantMigrationDue
from migrations import TENANT_DIR
from runtime.settings import Settings
from tenantctl.lifecycle_ops import rollout
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog, TopicTail
from tests.support.postgres import drop_tenants
from tests.support.stack import TenantIds
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack
TIMEOUT_S = 60.0


@pytest.fixture
async def at_version_1(pg: asyncpg.Connection, tenants: TenantIds,
                       ) -> AsyncIterator[list[str]]:
    """Creates tenants at template version 1 (registry version 1) on demand, in order; drops
    them after the test, so one left below version 2 never joins the next test's rollout."""
    made: list[str] = []
    yield made
    await drop_tenants(pg, made)
    await pg.execute(
        f"DELETE FROM {ns.CONTROL}.migration_rollouts WHERE rollout_id LIKE 'test-%'")


async def _make(pg: asyncpg.Connection, tenants: TenantIds, made: list[str], n: int) -> list[str]:
    first = [m for m in load_migrations(TENANT_DIR) if m.version == 1]
    store = ns.tenant_store()
    new = [tenants.new() for _ in range(n)]
    for tenant_id in new:  # one by one: the rollout orders tenants by created_at
        async with pg.transaction():
            await store.create(pg, tenant_id, "free", first)
    made += new
    return new


async def _alone(pg: asyncpg.Connection, mine: Sequence[str]) -> None:
    """A rollout takes every tenant below the target: other tests' tenants would join ours."""
    async def none_foreign() -> bool:
        return not await pg.fetchval(
            f"SELECT count(*) FROM {ns.CONTROL}.tenants WHERE status <> 'erased'"
            " AND schema_version < 2 AND NOT tenant_id = ANY($1::text[])", list(mine))

    # The session's namespace has its own registry: only this session's tests make tenants there.
    await wait_until(none_foreign, 30, what="no other tenant below version 2", interval=1)


async def _version(pg: asyncpg.Connection, tenant_id: str) -> int:
    return int(await pg.fetchval(
        f"SELECT schema_version FROM {ns.CONTROL}.tenants WHERE tenant_id = $1", tenant_id))


async def _has_tags(pg: asyncpg.Connection, tenant_id: str) -> bool:
    return bool(await pg.fetchval(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = $1"
        " AND table_name = 'documents' AND column_name = 'tags' AND data_type = 'ARRAY'",
        f"{ns.tenant(tenant_id)}"))


async def _break(pg: asyncpg.Connection, tenant_id: str) -> None:
    """A conflicting column of another type: migration 0002's ADD COLUMN tags fails."""
    await pg.execute(f'ALTER TABLE "{ns.tenant(tenant_id)}".documents ADD COLUMN tags integer')


def _quiet() -> Console:
    return Console(file=io.StringIO())


async def test_canary_rollout_migrates_every_tenant_and_a_rerun_is_a_noop(
    at_version_1: list[str], pg: asyncpg.Connection, tenants: TenantIds, settings: Settings,
    results: ResultLog,
) -> None:
    mine = await _make(pg, tenants, at_version_1, 3)
    await _alone(pg, mine)

    summary = await rollout(settings, _quiet(), None, 1, 0, TIMEOUT_S)

    assert summary["target"] == 2 and summary["tenants"] == 3, summary
    assert (summary["migrated"], summary["failed"]) == (3, 0) and "halted" not in summary
    for tenant_id in mine:
        assert await _version(pg, tenant_id) == 2 and await _has_tags(pg, tenant_id)
    migrated = [e for e in results.seen if e.type == "TenantMigrated"
                and e.data["rollout_id"] == summary["rollout_id"]]
    assert sorted(e.subject for e in migrated) == sorted(mine)
    assert all((e.data["from_version"], e.data["to_version"]) == (1, 2) for e in migrated)
    assert await pg.fetchval(f"SELECT status FROM {ns.CONTROL}.migration_rollouts"
                             " WHERE rollout_id = $1", summary["rollout_id"]) == "done"

    again = await rollout(settings, _quiet(), None, 1, 0, TIMEOUT_S)

    assert again["tenants"] == 0 and again["migrated"] == 0
    assert not await pg.fetchval(f"SELECT 1 FROM {ns.CONTROL}.migration_rollouts"
                                 " WHERE rollout_id = $1", again["rollout_id"])


async def test_a_failing_tenant_does_not_stop_the_others(
    at_version_1: list[str], pg: asyncpg.Connection, tenants: TenantIds, settings: Settings,
    results: ResultLog,
) -> None:
    bad, *good = await _make(pg, tenants, at_version_1, 3)
    await _break(pg, bad)
    await _alone(pg, [bad, *good])

    summary = await rollout(settings, _quiet(), None, 0, 1, TIMEOUT_S)

    assert (summary["migrated"], summary["failed"]) == (2, 1) and "halted" not in summary
    assert summary["failures"] == {bad: "migration_error"}
    assert await _version(pg, bad) == 1
    for tenant_id in good:
        assert await _version(pg, tenant_id) == 2 and await _has_tags(pg, tenant_id)


async def test_a_tenant_failing_in_the_middle_of_a_batch_is_answered_alone_and_the_others_commit(
    at_version_1: list[str], pg: asyncpg.Connection, tenants: TenantIds, settings: Settings,
    publisher: KafkaEventPublisher, results: ResultLog,
) -> None:
    first, bad, last = await _make(pg, tenants, at_version_1, 3)  # the rollout's order
    await _break(pg, bad)
    (blocker,) = await _make(pg, tenants, at_version_1, 1)
    await pg.execute(f"UPDATE {ns.CONTROL}.tenants SET schema_version = 2 WHERE tenant_id = $1",
                     blocker)  # not due: it only keeps the worker busy
    mine = [first, bad, last]
    await _alone(pg, mine)
    # The worker is held in a transaction on the blocker's lock while the rollout publishes, so
    # its next fetch has all three migrations: they run in one batch transaction.
    holder = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        async with TopicTail(settings, topics.LIFECYCLE) as tail:
            await holder.execute("BEGIN")
            await holder.execute(tenant_lock_sql(blocker))
            await bk.send(publisher, bk.envelope(TenantDeactivated(tenant_id=blocker)))
            await wait_until(lambda: pg.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"),
                30, what="the worker waiting on the blocker's lock", interval=0.05)
            task = asyncio.create_task(rollout(settings, _quiet(), None, 0, 1, TIMEOUT_S))
            await wait_until(lambda: all(tail.with_key(t.encode()) for t in mine), 30,
                             what="the rollout's events on the topic", interval=0.05)
    finally:
        await holder.execute("ROLLBACK")
        await holder.close()

    summary = await task

    assert (summary["migrated"], summary["failed"]) == (2, 1) and "halted" not in summary
    assert summary["failures"] == {bad: "migration_error"}
    assert await _version(pg, bad) == 1 and not await _has_tags(pg, bad)
    for tenant_id in (first, last):
        assert await _version(pg, tenant_id) == 2 and await _has_tags(pg, tenant_id)
    answers = {e.subject: e for e in results.seen
               if e.data.get("rollout_id") == summary["rollout_id"]}
    assert answers[bad].type == "TenantMigrationFailed", answers[bad].data
    # One claim statement, one transaction: the three inbox rows share its transaction id.
    dues = [answers[t].causationid for t in mine]
    assert await pg.fetchval(
        f"SELECT count(DISTINCT xmin::text) FROM {ns.CONTROL}.inbox WHERE event_id = ANY($1)",
        dues) == 1


async def test_failed_canaries_halt_the_rollout_and_the_rest_stay_put(
    at_version_1: list[str], pg: asyncpg.Connection, tenants: TenantIds, settings: Settings,
    results: ResultLog,
) -> None:
    bad = await _make(pg, tenants, at_version_1, 2)  # created first: they are the canaries
    queued = await _make(pg, tenants, at_version_1, 2)
    for tenant_id in bad:
        await _break(pg, tenant_id)
    await _alone(pg, [*bad, *queued])

    summary = await rollout(settings, _quiet(), None, 2, 0, TIMEOUT_S)

    assert summary["halted"] == "canary failed" and summary["failed"] >= 1, summary
    assert await pg.fetchval(f"SELECT status FROM {ns.CONTROL}.migration_rollouts"
                             " WHERE rollout_id = $1", summary["rollout_id"]) == "halted"
    for tenant_id in [*bad, *queued]:
        assert await _version(pg, tenant_id) == 1
    # A TenantMigrationDue of the halted rollout arriving now is answered without any work.
    late = await bk.ask(bk_publisher := await _publisher(settings), results, TenantMigrationDue(
        tenant_id=queued[0], target_version=2, rollout_id=summary["rollout_id"]))
    await bk_publisher.stop()
    assert late.type == "TenantMigrationFailed" and late.data["reason"] == "rollout_halted"
    assert await _version(pg, queued[0]) == 1


async def _publisher(settings: Settings) -> KafkaEventPublisher:
    publisher = KafkaEventPublisher(settings.kafka, client_id=f"tests-{secrets.token_hex(3)}")
    await publisher.start()
    return publisher


async def test_lock_timeout_is_retried_until_the_lock_is_released(
    at_version_1: list[str], pg: asyncpg.Connection, tenants: TenantIds, settings: Settings,
    publisher: KafkaEventPublisher, results: ResultLog,
) -> None:
    (tenant_id,) = await _make(pg, tenants, at_version_1, 1)
    table = f'"{ns.tenant(tenant_id)}".documents'
    holder = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        await holder.execute(f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        due = await bk.send(publisher, bk.envelope(TenantMigrationDue(
            tenant_id=tenant_id, target_version=2, rollout_id=f"test-{secrets.token_hex(4)}")))
        waiters: set[str] = set()

        async def two_attempts() -> bool:
            rows = await pg.fetch(
                "SELECT virtualtransaction FROM pg_locks WHERE relation = $1::regclass"
                " AND NOT granted", table)
            waiters.update(r["virtualtransaction"] for r in rows)
            return len(waiters) >= 2  # a lock wait timed out and a new transaction tried again

        await wait_until(two_attempts, 30, what="a retried migration", interval=0.1)
        assert not results.caused_by(due.id)
        assert await _version(pg, tenant_id) == 1
    finally:
        await holder.execute("ROLLBACK")
        await holder.close()

    result = await results.first(due.id, 60)

    assert result.type == "TenantMigrated", result.data
    assert await _version(pg, tenant_id) == 2 and await _has_tags(pg, tenant_id)


async def test_failures_past_the_budget_halt_the_main_wave_and_a_rerun_resumes(
    at_version_1: list[str], pg: asyncpg.Connection, tenants: TenantIds, settings: Settings,
    results: ResultLog,
) -> None:
    (canary,) = await _make(pg, tenants, at_version_1, 1)  # created first: the one canary
    bad = await _make(pg, tenants, at_version_1, 2)
    rest = await _make(pg, tenants, at_version_1, 2)
    for tenant_id in bad:
        await _break(pg, tenant_id)
    mine = [canary, *bad, *rest]
    await _alone(pg, mine)

    summary = await rollout(settings, _quiet(), None, 1, 1, TIMEOUT_S)

    # The canary passed; the main wave's second failure is past F=1 and halts it.
    assert summary["halted"] == "more than 1 failures", summary
    assert summary["failures"] == {t: "migration_error" for t in bad}, summary
    assert await pg.fetchval(f"SELECT status FROM {ns.CONTROL}.migration_rollouts"
                             " WHERE rollout_id = $1", summary["rollout_id"]) == "halted"
    assert await _version(pg, canary) == 2 and await _has_tags(pg, canary)
    for tenant_id in bad:
        assert await _version(pg, tenant_id) == 1
    # Each of the rest was migrated before the halt or answered rollout_halted untouched.
    def answers(tenant_id: str) -> list[Envelope]:
        return [e for e in results.seen if e.subject == tenant_id
                and e.data.get("rollout_id") == summary["rollout_id"]]

    for tenant_id in rest:
        answer = await wait_until(functools.partial(answers, tenant_id), TIMEOUT_S,
                                  what=f"the answer of {tenant_id}")
        version = await _version(pg, tenant_id)
        if answer[0].type == "TenantMigrated":
            assert version == 2 and await _has_tags(pg, tenant_id)
        else:
            assert answer[0].data["reason"] == "rollout_halted", answer[0].data
            assert version == 1 and not await _has_tags(pg, tenant_id)

    for tenant_id in bad:  # the operator fixes the cause, then re-runs the rollout
        await pg.execute(f'ALTER TABLE "{ns.tenant(tenant_id)}".documents DROP COLUMN tags')
    below = [t for t in mine if await _version(pg, t) < 2]
    again = await rollout(settings, _quiet(), None, 1, 1, TIMEOUT_S)

    assert "halted" not in again and again["failed"] == 0, again
    assert again["tenants"] == again["migrated"] == len(below) >= len(bad), again
    for tenant_id in mine:
        assert await _version(pg, tenant_id) == 2 and await _has_tags(pg, tenant_id)
    assert await pg.fetchval(f"SELECT status FROM {ns.CONTROL}.migration_rollouts"
                             " WHERE rollout_id = $1", again["rollout_id"]) == "done"
