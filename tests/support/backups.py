"""Helpers of the backup, restore, erase and lifecycle suites: our own ``backup`` workers, input
events on any topic, acting as a tenant, reading artifacts with the stock CLIs, and the cleanup
of what backups leave behind (jobs, catalog rows, keys, drills, replaced schemas)."""

# Table names are constants of the tests; values are bind parameters.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg

from adapters.kafka.producer import KafkaEventPublisher
from contracts import codec, topics
from contracts.envelope import Envelope
from contracts.events import BackupDue, Event, RestoreRequested, TenantRequested
from contracts.publish import record_of
from domain.tenant_ids import quote_ident
from runtime.settings import Settings
from tests.support import names as ns
from tests.support.kafka import ResultLog, group_members
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

# The stack's state folder, as scripts/lib/setup.sh finds it (a private stack sets the variable).
_STATE = Path(
    os.environ.get("TENANT_STACK_STATE")
    or Path(os.environ.get("TENANT_STACK_CACHE") or Path.home() / ".cache" / "tenant-service")
    / "state"
)
MASTER_KEY = _STATE / "age" / "master.key"
OPERATOR_KEY = _STATE / "age" / "operator.key"
#: fast polling and short backoffs, so the suites wait on state for seconds, not minutes
FAST_BACKUP_ENV = {
    "TENANT_BACKUP_TARGET": "local",
    "TENANT_BACKUP_POLL_INTERVAL_S": "0.2",
    "TENANT_BACKUP_RETRY_BASE_S": "0.2",
    "TENANT_BACKUP_RETRY_MAX_S": "1",
    "TENANT_BACKUP_LEASE_S": "6",
    "TENANT_RESTORE_GRACE_S": "3600",
}
FOREIGN_WAIT_S = 60.0


# ---- events ------------------------------------------------------------------------------------


def envelope(event: Event, *, event_id: str | None = None) -> Envelope:
    return codec.envelope_for(event, event_id=event_id, source="urn:tests")


async def send(publisher: KafkaEventPublisher, env: Envelope) -> Envelope:
    """Publish an input event on its own topic, keyed by its subject, as upstream does."""
    await publisher.publish(*record_of(env).message)
    return env


async def ask(publisher: KafkaEventPublisher, results: ResultLog, event: Event,
              limit_s: float = 60.0, *, event_id: str | None = None) -> Envelope:
    """Publish ``event`` and return its first result."""
    env = await send(publisher, envelope(event, event_id=event_id))
    return await results.first(env.id, limit_s)


async def provision(publisher: KafkaEventPublisher, results: ResultLog, tenant_id: str,
                    plan: str = "free") -> None:
    result = await ask(publisher, results, TenantRequested(tenant_id=tenant_id, plan=plan))
    assert result.type == "TenantProvisioned", result


async def backup(publisher: KafkaEventPublisher, results: ResultLog, tenant_id: str,
                 limit_s: float = 90.0) -> Envelope:
    return await ask(publisher, results, BackupDue(tenant_id=tenant_id), limit_s)


async def restore(publisher: KafkaEventPublisher, results: ResultLog, tenant_id: str,
                  backup_id: str = "latest", limit_s: float = 90.0) -> Envelope:
    return await ask(publisher, results, RestoreRequested(tenant_id=tenant_id, backup_id=backup_id),
                     limit_s)


# ---- our own backup workers ----------------------------------------------------------------------


class BackupWorkers:
    """``backup`` workers started by a suite with its own settings; all stopped at the end."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self._settings, self._log_dir = settings, log_dir
        self.started: list[WorkerProcess] = []

    async def start(self, name: str, env: Mapping[str, str] | None = None,
                    roles: Sequence[str] = ("backup",)) -> WorkerProcess:
        worker = WorkerProcess(roles, self._log_dir / f"{name}-{secrets.token_hex(2)}.log",
                               {**FAST_BACKUP_ENV, **(env or {})})
        await worker.start()
        self.started.append(worker)
        return worker

    async def stop(self, worker: WorkerProcess) -> int:
        return await worker.terminate(self._settings.shutdown_grace_s + 10)

    async def stop_all(self) -> None:
        for worker in self.started:
            if worker.running:
                await self.stop(worker)


@contextlib.asynccontextmanager
async def backup_workers(settings: Settings, log_dir: Path) -> AsyncIterator[BackupWorkers]:
    """Our backup workers, in the session's own namespace: no backup worker we did not start can
    be in its group or claim from its job table. One that is (a leak from an earlier test) fails
    the test, since it would take our jobs with another master key or folder."""
    await wait_for_backup_group(settings)
    workers = BackupWorkers(settings, log_dir)
    try:
        yield workers
    finally:
        await workers.stop_all()


async def backup_group_members(settings: Settings) -> int:
    _, members = await group_members(settings, topics.BACKUP_GROUP)
    return len(members)


async def wait_for_backup_group(settings: Settings, ours: int = 0) -> None:
    """Wait until group tenant-backup holds at most our ``ours`` members; fail if it does not."""

    async def alone() -> bool:
        return await backup_group_members(settings) <= ours

    await wait_until(
        alone, FOREIGN_WAIT_S, interval=1.0,
        what=f"group tenant-backup of this session to hold at most our {ours} members",
    )


def assert_ours(uri: str, expected_prefix: str) -> None:
    """The job's artifact is where our worker writes: in the session's namespace no other backup
    worker can take it, so anything else is a failure, not a reason to skip."""
    assert uri.startswith(expected_prefix), (
        f"the job was done by a backup worker this test did not start ({uri}, expected under"
        f" {expected_prefix})"
    )


# ---- acting as a tenant ------------------------------------------------------------------------


async def as_tenant(pg: asyncpg.Connection, tenant_id: str, sql: str, *args: Any) -> list[Any]:
    """Run ``sql`` as the tenant's role (what tenant_app does after SET ROLE)."""
    async with pg.transaction():
        await pg.execute(f"SET LOCAL ROLE {quote_ident(ns.tenant(tenant_id))}")
        return list(await pg.fetch(sql, *args))


async def add_users(pg: asyncpg.Connection, tenant_id: str, names: Sequence[str]) -> None:
    await as_tenant(pg, tenant_id,
                    f"INSERT INTO {quote_ident(ns.tenant(tenant_id))}.users (email, display_name)"
                    " SELECT n || '@example.test', n FROM unnest($1::text[]) AS n", list(names))


async def user_names(pg: asyncpg.Connection, tenant_id: str) -> list[str]:
    rows = await pg.fetch(
        f"SELECT display_name FROM {quote_ident(ns.tenant(tenant_id))}.users ORDER BY 1")
    return [r["display_name"] for r in rows]


async def app_is_member(pg: asyncpg.Connection, tenant_id: str) -> bool:
    return bool(await pg.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " JOIN pg_roles a ON a.oid = m.member WHERE r.rolname = $1 AND a.rolname = $2)",
        ns.tenant(tenant_id), ns.names().app_role))


# ---- catalog, keys, artifacts ------------------------------------------------------------------


async def catalog(pg: asyncpg.Connection, tenant_id: str) -> list[asyncpg.Record]:
    return list(await pg.fetch(
        f"SELECT * FROM {ns.CONTROL}.backups WHERE tenant_id = $1 ORDER BY finished_at", tenant_id))


async def jobs_of(pg: asyncpg.Connection, tenant_id: str) -> list[asyncpg.Record]:
    return list(await pg.fetch(
        f"SELECT * FROM {ns.CONTROL}.backup_jobs WHERE tenant_id = $1 ORDER BY created_at", tenant_id))


def local_path(uri: str) -> Path:
    parts = urlsplit(uri)
    assert parts.scheme == "file", f"not a local artifact: {uri}"
    return Path(unquote(parts.path))


def manifest_of(artifact: Path) -> dict[str, Any]:
    name = artifact.name.removesuffix(".dump.zst.age") + ".manifest.json"
    manifest: dict[str, Any] = json.loads((artifact.parent / name).read_text())
    return manifest


async def wrapped_identity(pg: asyncpg.Connection, tenant_id: str) -> bytes | None:
    value = await pg.fetchval(
        f"SELECT wrapped_identity FROM {ns.CONTROL}.tenant_keys WHERE tenant_id = $1", tenant_id)
    return bytes(value) if value is not None else None


def unwrap(wrapped: bytes, master_key: Path = MASTER_KEY) -> str:
    """The tenant's identity, with the stock CLI: ``age -d -i master.key``."""
    done = subprocess.run(["age", "-d", "-i", str(master_key)], input=wrapped,
                          capture_output=True, check=True)
    return done.stdout.decode()


def stock_restore_list(artifact: Path, identity_file: Path) -> subprocess.CompletedProcess[str]:
    """``age -d -i KEY FILE | zstd -d | pg_restore -l``, as the README documents."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c",
         'age -d -i "$1" "$2" | zstd -q -d -c | pg_restore -l', "stock", str(identity_file),
         str(artifact)],
        capture_output=True, text=True, check=False,
    )


def write_identity(directory: Path, identity: str) -> Path:
    path = directory / f"identity-{secrets.token_hex(4)}.key"
    path.write_text(identity)
    os.chmod(path, 0o600)
    return path


# ---- cleanup -------------------------------------------------------------------------------------


async def forget_backups(pg: asyncpg.Connection, tenant_ids: Sequence[str]) -> None:
    """Jobs, catalog rows, keys, drills and replaced schemas of these tenants (not artifacts:
    those live in each suite's own temporary folder)."""
    ids = list(tenant_ids)
    if not ids:
        return
    for row in await pg.fetch(
            f"SELECT schema_name FROM {ns.CONTROL}.replaced_schemas WHERE tenant_id = ANY($1::text[])",
            ids):
        await pg.execute(f"DROP SCHEMA IF EXISTS {quote_ident(row['schema_name'])} CASCADE")
    for table in ("replaced_schemas", "restore_drills", "backup_jobs", "backups", "tenant_keys"):
        await pg.execute(f"DELETE FROM {ns.CONTROL}.{table} WHERE tenant_id = ANY($1::text[])", ids)


async def wait_job_settled(pg: asyncpg.Connection, job_id: str, limit_s: float = 60.0) -> str:
    async def settled() -> str | None:
        status = await pg.fetchval(f"SELECT status FROM {ns.CONTROL}.backup_jobs WHERE job_id = $1",
                                   job_id)
        return status if status in ("succeeded", "failed") else None

    return await wait_until(settled, limit_s, what=f"job {job_id} to finish", interval=0.2)


async def gather(*aws: Any) -> list[Any]:
    return list(await asyncio.gather(*aws))
