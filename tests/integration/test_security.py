"""Isolation between tenants, the app role's reach, RLS, suspended tenants, and injection strings
in every string field of every lifecycle and backup event."""

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from contracts import topics
from contracts.envelope import Envelope
from contracts.events import (
    BackupDue,
    Event,
    RestoreRequested,
    TenantDeactivated,
    TenantEraseRequested,
    TenantMigrationDue,
    TenantReactivated,
    TenantRequested,
)
from domain.migrations import Migration
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog, TopicTail
from tests.support.stack import TenantIds
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack

INJECTIONS = [
    'x"; DROP SCHEMA public CASCADE;--',
    "'; DROP TABLE tenant_service.tenants;--",
    "$$; DROP TABLE tenant_service.outbox; $$",
    "租户_ünï'cødé\"🙂",
]


@pytest.fixture(scope="module")
async def backup_worker(settings: Settings, log_dir: Path, pg: asyncpg.Connection,
                        tenants: TenantIds, tmp_path_factory: pytest.TempPathFactory
                        ) -> AsyncIterator[None]:
    """A member of tenant-backup, so backup events get answered (any member will do)."""
    mine = len(tenants.ids)
    async with bk.backup_workers(settings, log_dir) as pool:
        await pool.start("security", {
            "TENANT_BACKUP_LOCAL_DIR": str(tmp_path_factory.mktemp("security"))})
        yield
    await bk.forget_backups(pg, tenants.ids[mine:])


async def _two(publisher: KafkaEventPublisher, results: ResultLog, tenants: TenantIds
               ) -> tuple[str, str]:
    a, b = tenants.new(), tenants.new()
    await bk.provision(publisher, results, a)
    await bk.provision(publisher, results, b)
    return a, b


async def test_a_tenant_role_cannot_touch_another_tenants_schema(
    publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection, tenants: TenantIds,
) -> None:
    a, b = await _two(publisher, results, tenants)
    await bk.add_users(pg, b, ["secret"])

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await bk.as_tenant(pg, a, f'SELECT * FROM "{ns.tenant(b)}".users')
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await bk.as_tenant(pg, a, f"INSERT INTO \"{ns.tenant(b)}\".users (email) VALUES ('x@y.z')")
    assert await bk.user_names(pg, b) == ["secret"]


async def test_the_app_role_without_set_role_sees_no_tenant_data(
    publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection, tenants: TenantIds,
) -> None:
    a, _ = await _two(publisher, results, tenants)
    await bk.add_users(pg, a, ["hidden"])

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with pg.transaction():
            await pg.execute(f"SET LOCAL ROLE {ns.names().app_role}")
            await pg.fetch(f'SELECT * FROM "{ns.tenant(a)}".users')


async def test_rls_hides_rows_even_from_a_role_granted_the_table(
    publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection, tenants: TenantIds,
) -> None:
    a, b = await _two(publisher, results, tenants)
    await bk.add_users(pg, a, ["mine"])
    leaked = await _read_through_a_leaked_grant(pg, a, b, f'"{ns.tenant(a)}".users')

    assert leaked == []
    assert len(await bk.as_tenant(pg, a, f'SELECT * FROM "{ns.tenant(a)}".users')) == 1


async def test_a_table_a_migration_adds_is_the_tenants_alone_at_once(
    publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection, tenants: TenantIds,
) -> None:
    a, b = await _two(publisher, results, tenants)
    store = ns.tenant_store()
    adds_notes = Migration(99, "notes", "CREATE TABLE notes (id serial PRIMARY KEY, body text);")
    async with pg.transaction():
        await store.migrate(pg, a, [adds_notes])
    notes = f'"{ns.tenant(a)}".notes'

    # Grants on the new table and its sequence: the tenant's role writes through the serial id.
    await bk.as_tenant(pg, a, f"INSERT INTO {notes} (body) VALUES ('mine')")
    assert [r["body"] for r in await bk.as_tenant(pg, a, f"SELECT body FROM {notes}")] == ["mine"]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await bk.as_tenant(pg, b, f"SELECT * FROM {notes}")
    # RLS on it as on the template's tables: a grant that leaks shows another role nothing.
    assert await _read_through_a_leaked_grant(pg, a, b, notes) == []


async def test_a_suspended_tenant_is_unreachable_through_the_app_role(
    publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection, tenants: TenantIds,
) -> None:
    a, _ = await _two(publisher, results, tenants)
    suspended = await bk.ask(publisher, results, TenantDeactivated(tenant_id=a))
    assert suspended.type == "TenantSuspended"

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with pg.transaction():
            await pg.execute(f"SET LOCAL ROLE {ns.names().app_role}")
            await pg.execute(f'SET LOCAL ROLE "{ns.tenant(a)}"')


def _injected(victim: str) -> list[Event]:
    events: list[Event] = []
    for s in INJECTIONS:
        events += [
            TenantRequested(tenant_id=s, plan="free"),
            TenantRequested(tenant_id=victim, plan=s),
            TenantRequested(tenant_id=victim, plan="free", display_name=s),
            TenantDeactivated(tenant_id=s),
            TenantDeactivated(tenant_id=victim, reason=s),
            TenantReactivated(tenant_id=s),
            TenantEraseRequested(tenant_id=s),
            TenantMigrationDue(tenant_id=s, target_version=2, rollout_id="r"),
            TenantMigrationDue(tenant_id=victim, target_version=2, rollout_id=s),
            BackupDue(tenant_id=s),
            RestoreRequested(tenant_id=s),
            RestoreRequested(tenant_id=victim, backup_id=s),
        ]
    return events


async def _control_snapshot(pg: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await pg.fetch(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname IN ('public', $1, 'extensions') AND c.relkind = 'r'"
        " ORDER BY 1, 2", ns.CONTROL)
    return [(r[0], r[1]) for r in rows]


async def test_injection_strings_in_every_field_change_nothing(
    backup_worker: None, publisher: KafkaEventPublisher, results: ResultLog,
    pg: asyncpg.Connection, tenants: TenantIds, settings: Settings,
) -> None:
    victim = tenants.new()
    for s in INJECTIONS:
        tenants.track(s)
    await bk.provision(publisher, results, victim)
    await bk.add_users(pg, victim, ["survivor"])
    before = await _control_snapshot(pg)

    async with TopicTail(settings, topics.DLQ) as dlq:
        sent: list[Envelope] = [await bk.send(publisher, bk.envelope(e))
                                for e in _injected(victim)]

        def answered() -> dict[str, str] | None:
            dead = {dict(r.headers).get("ce_id", b"").decode(): "dead_letter"
                    for r in dlq.records}
            outcome = {e.id: ([r.type for r in results.caused_by(e.id)] or [dead.get(e.id, "")])[0]
                       for e in sent}
            return outcome if all(outcome.values()) else None

        outcomes = await wait_until(answered, 90, what="every injected event answered")

    for env in sent:
        kind = outcomes[env.id]
        harmless = kind == "dead_letter" or kind.endswith("Failed") or env.subject == victim
        assert harmless, (env.type, env.data, kind)
    assert await pg.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = 'public'")
    assert await _control_snapshot(pg) == before
    assert await bk.user_names(pg, victim) == ["survivor"]
    for s in INJECTIONS:
        assert not await pg.fetchval(f"SELECT 1 FROM {ns.CONTROL}.tenants WHERE tenant_id = $1", s)


async def _read_through_a_leaked_grant(
    pg: asyncpg.Connection, owner: str, other: str, table: str
) -> list[asyncpg.Record]:
    """What ``other``'s role reads of ``owner``'s ``table`` once it is granted it by mistake
    (row-level security must still show it nothing); the grant is revoked again."""
    schema, role = f'"{ns.tenant(owner)}"', f'"{ns.tenant(other)}"'
    await pg.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}; GRANT SELECT ON {table} TO {role}")
    try:
        return await bk.as_tenant(pg, other, f"SELECT * FROM {table}")
    finally:
        await pg.execute(f"REVOKE ALL ON {table} FROM {role}; REVOKE ALL ON SCHEMA {schema} FROM {role}")
