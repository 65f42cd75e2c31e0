"""The erase and restore parts of the chaos run, and the checks that nothing was lost, swapped
twice or left stuck.

Erasures: some ask for an ``archive``; a few erased tenants get a second TenantEraseRequested
(a new event id), which must answer the first erase's archive id. Restores: a few tenants, kept
apart from every other lifecycle event, get rows, a backup, post-backup writes (inserts and a
delete) and a RestoreRequested for that backup, while the fault loop runs; the restored rows must
equal the backup's manifest and each restore must have swapped exactly once. Every third case
races its restore with an erasure of the tenant instead: whichever wins, the tenant ends erased,
with no schema of it left (live or replaced) and a restore that failed never swapped.
"""

# SQL below interpolates only constants of the test and quoted identifiers.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from contracts import codec, topics
from contracts.envelope import Envelope
from contracts.events import BackupDue, RestoreRequested, TenantEraseRequested
from domain.tenant_ids import quote_ident
from runtime.settings import Settings
from tests.chaos.observe import EventsTail, InputPublisher, group_lag
from tests.support import names as ns
from tests.support.backups import local_path, manifest_of, stock_restore_list
from tests.support.waiting import wait_until

T = TypeVar("T")
#: the groups whose lag must reach 0 once every input is answered, with their input topics
GROUPS = ((topics.PROVISIONER_GROUP, topics.LIFECYCLE), (topics.BACKUP_GROUP, topics.BACKUPS),
          (topics.METRICS_GROUP, topics.METRICS))
TABLES = ("users", "projects", "documents")


# ---- the plan's part ---------------------------------------------------------------------------


def erase_event(rng: random.Random, tenant: str) -> TenantEraseRequested:
    """About half of the erasures keep a final archive (under the operator keys)."""
    return TenantEraseRequested(tenant_id=tenant, archive=rng.random() < 0.5)


def repeat_erasures(rng: random.Random, erased: list[str], share: float = 0.25
                    ) -> list[tuple[str, Envelope]]:
    """A second erase request (new event id, archive flag at random) for some erased tenants."""
    picked = rng.sample(erased, max(1, int(len(erased) * share))) if erased else []
    return [(t, codec.envelope_for(TenantEraseRequested(tenant_id=t, archive=rng.random() < 0.5),
                                   source="urn:chaos")) for t in picked]


@dataclass
class RestoreCase:
    """One tenant's backup -> post-backup writes -> restore, driven while faults go on."""

    tenant: str
    request_id: str  # the tenant's TenantRequested
    before: dict[str, int]  # rows written before the backup
    after: int  # users added after the backup (the restore must undo them)
    erase: TenantEraseRequested | None = None  # published right after the restore: they race
    backup: Envelope | None = None
    restore: Envelope | None = None
    backup_id: str | None = None
    sent: list[Envelope] = field(default_factory=list)  # every input this case published
    problems: list[str] = field(default_factory=list)


def restore_cases(rng: random.Random, tenants: list[str], request_of: dict[str, str],
                  n: int) -> list[RestoreCase]:
    """``n`` of the first third of the tenants (provisioned early, so there is time)."""
    early = tenants[: max(n, len(tenants) // 3)]
    return [RestoreCase(t, request_of[t], {"users": rng.randint(2, 6), "docs": rng.randint(1, 4)},
                        rng.randint(1, 4), erase_event(rng, t) if i % 3 == 2 else None)
            for i, t in enumerate(rng.sample(early, n))]


async def _retrying(dsn: str, what: str, fn: Callable[[asyncpg.Connection], Awaitable[T]],
                    limit_s: float = 120.0) -> T:
    """``fn`` on a fresh connection, again after a connection fault (PostgreSQL restarts)."""
    box: list[T] = []

    async def attempt() -> bool:
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return False
        try:
            box.append(await fn(conn))
            return True
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, TimeoutError):
            return False
        finally:
            await conn.close(timeout=5)

    await wait_until(attempt, limit_s, what=what, interval=0.5)
    return box[0]


async def _as_tenant(conn: asyncpg.Connection, tenant: str, sql: str) -> None:
    async with conn.transaction():  # one transaction: a retry never writes half of it twice
        await conn.execute(f"SET LOCAL ROLE {quote_ident(ns.tenant(tenant))}")
        await conn.execute(sql)


def _writes_before(case: RestoreCase) -> str:
    s = quote_ident(ns.tenant(case.tenant))
    return (
        f"INSERT INTO {s}.users (email, display_name) SELECT 'b' || i || '@chaos.test', 'b' || i"
        f" FROM generate_series(1, {int(case.before['users'])}) AS i;"
        f" INSERT INTO {s}.projects (owner_id, name) SELECT id, 'p' FROM {s}.users;"
        f" INSERT INTO {s}.documents (project_id, title) SELECT p.id, 'd' || i"
        f" FROM {s}.projects p, generate_series(1, {int(case.before['docs'])}) AS i;"
    )


def _writes_after(case: RestoreCase) -> str:
    s = quote_ident(ns.tenant(case.tenant))
    return (
        f"INSERT INTO {s}.users (email, display_name) SELECT 'a' || i || '@chaos.test', 'a' || i"
        f" FROM generate_series(1, {int(case.after)}) AS i;"
        f" DELETE FROM {s}.documents WHERE id = (SELECT min(id) FROM {s}.documents);"
    )


def expected_rows(case: RestoreCase) -> dict[str, int]:
    users = case.before["users"]
    return {"users": users, "projects": users, "documents": users * case.before["docs"]}


async def drive_restore(case: RestoreCase, dsn: str, pub: InputPublisher, tail: EventsTail,
                        limit_s: float, strike: Callable[[], Awaitable[None]]) -> None:
    """Rows, a backup, more rows, a restore of that backup: each step waits for the last.
    ``strike`` (SIGKILL of the backup workers) runs once the restore's job is seen running."""
    await tail.wait_for({case.request_id}, limit_s, f"request of {case.tenant}")
    await _retrying(dsn, f"rows of {case.tenant}",
                    lambda c: _as_tenant(c, case.tenant, _writes_before(case)))
    case.backup = codec.envelope_for(BackupDue(tenant_id=case.tenant), source="urn:chaos")
    await _send(case, pub, case.backup)
    await tail.wait_for({case.backup.id}, limit_s, f"backup of {case.tenant}")
    answer = tail.by_cause[case.backup.id][0].envelope
    if answer.type != "BackupCompleted":
        case.problems.append(f"restore case {case.tenant}: backup answered {answer.type}"
                             f" {answer.data}")
        return
    case.backup_id = answer.data["backup_id"]
    await _retrying(dsn, f"post-backup rows of {case.tenant}",
                    lambda c: _as_tenant(c, case.tenant, _writes_after(case)))
    case.restore = codec.envelope_for(
        RestoreRequested(tenant_id=case.tenant, backup_id=case.backup_id), source="urn:chaos")
    await _send(case, pub, case.restore)
    if case.erase is not None:  # another topic: nothing orders the two
        await _send(case, pub, codec.envelope_for(case.erase, source="urn:chaos"))
    await _send(case, pub, case.restore)  # a duplicate delivery: still one restore
    await _strike_when_running(case, dsn, tail, strike)
    await tail.wait_for({e.id for e in case.sent}, limit_s, f"restore of {case.tenant}")


async def _strike_when_running(case: RestoreCase, dsn: str, tail: EventsTail,
                               strike: Callable[[], Awaitable[None]]) -> None:
    """Kill the workers while the restore job runs; a restore done before we look is no error
    (small tenants restore in about a second): the summary counts the strikes that landed."""
    assert case.restore is not None
    restore_id = case.restore.id
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return
    try:
        async def running() -> bool:
            return restore_id in tail.by_cause or bool(await conn.fetchval(
                f"SELECT 1 FROM {ns.CONTROL}.backup_jobs WHERE cause_id = $1 AND kind = 'restore'"
                " AND status = 'running' AND lease_owner IS NOT NULL", restore_id))

        await wait_until(running, 60, what=f"restore job of {case.tenant} to run", interval=0.1)
        if restore_id not in tail.by_cause:
            await strike()
    except (AssertionError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
            asyncpg.InternalClientError):  # its connection broken mid-statement by a restart
        pass  # the strike is opportunistic: PostgreSQL may be restarting, the job may be done
    finally:
        await conn.close(timeout=5)


async def _send(case: RestoreCase, pub: InputPublisher, env: Envelope) -> None:
    await pub.send(env)
    case.sent.append(env)


# ---- checks --------------------------------------------------------------------------------------


def erase_answer(by_cause: dict[str, Any], env_id: str) -> Envelope | None:
    seen = by_cause.get(env_id) or []
    return seen[0].envelope if seen else None


async def check_archives(conn: asyncpg.Connection, erases: list[tuple[str, Envelope]],
                         repeats: list[tuple[str, Envelope]], by_cause: dict[str, Any],
                         operator_key: Path) -> tuple[list[str], int]:
    """Every archive an erase reported is catalogued, on the target, intact and readable with the
    operator key; a repeated erase reports the first one's archive id. Returns (problems, n)."""
    problems: list[str] = []
    first: dict[str, str | None] = {}
    archives: dict[str, str] = {}
    for tenant, env in erases:
        answer = erase_answer(by_cause, env.id)
        if answer is None or answer.type != "TenantErased":
            continue  # check_effects names it
        archive_id = answer.data.get("archive_backup_id")
        first[tenant] = archive_id
        asked = bool(env.data.get("archive"))
        if asked and not archive_id:
            problems.append(f"erase {env.id} ({tenant}) asked for an archive, answered none")
        if archive_id:
            archives[archive_id] = tenant
    for tenant, env in repeats:
        answer = erase_answer(by_cause, env.id)
        if answer is None or answer.type != "TenantErased":
            continue
        got = answer.data.get("archive_backup_id")
        if got != first.get(tenant):
            problems.append(f"repeated erase {env.id} ({tenant}) answered archive {got},"
                            f" the first erase {first.get(tenant)}")
    rows = {r["backup_id"]: r for r in await conn.fetch(
        f"SELECT * FROM {ns.CONTROL}.backups WHERE backup_id = ANY($1::text[])", sorted(archives))}
    for archive_id, tenant in sorted(archives.items()):
        row = rows.get(archive_id)
        if row is None or row["tenant_id"] != tenant:
            problems.append(f"archive {archive_id} of {tenant} lost: no catalogue row")
            continue
        path = local_path(row["uri"])
        if not path.is_file():
            problems.append(f"archive {archive_id} of {tenant} lost: no artifact {path}")
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() != row["sha256"]:
            problems.append(f"archive {archive_id} of {tenant}: artifact differs from its row")
            continue
        listing = await asyncio.to_thread(stock_restore_list, path, operator_key)
        if listing.returncode != 0 or "TABLE" not in listing.stdout:
            problems.append(f"archive {archive_id} of {tenant} unreadable with the operator key:"
                            f" {listing.stderr[-300:]}")
    return problems, len(archives)


async def check_restores(conn: asyncpg.Connection, cases: list[RestoreCase],
                         by_cause: dict[str, Any]) -> tuple[list[str], int, list[str]]:
    """Each completed restore swapped once and brought back exactly the backup's rows.
    Returns (problems, restores checked, the raced restores' answers)."""
    problems = [p for c in cases for p in c.problems]
    done = 0
    raced: list[str] = []
    for case in cases:
        if case.restore is None:
            problems.append(f"restore case {case.tenant}: no restore was requested")
            continue
        answer = erase_answer(by_cause, case.restore.id)
        if case.erase is not None:
            problems += await _check_raced(conn, case, answer)
            raced.append(f"{answer and answer.type} {answer and answer.data.get('reason', '')}".strip())
            continue
        if answer is None or answer.type != "RestoreCompleted":
            # The job's own record of what failed: the result carries only a reason.
            errors = [r[0] for r in await conn.fetch(
                f"SELECT last_error FROM {ns.CONTROL}.backup_jobs WHERE cause_id = $1",
                case.restore.id)]
            problems.append(f"restore of {case.tenant}: answered {answer and answer.type}"
                            f" {answer and answer.data}; the job recorded {errors}")
            continue
        jobs = await conn.fetch(
            f"SELECT * FROM {ns.CONTROL}.backup_jobs WHERE tenant_id = $1 AND kind = 'restore'",
            case.tenant)
        if len(jobs) != 1:
            problems.append(f"restore of {case.tenant}: {len(jobs)} restore jobs, want 1")
            continue
        job = jobs[0]
        if job["swapped_at"] is None or job["restored_backup_id"] != case.backup_id:
            problems.append(f"restore of {case.tenant}: job swapped_at={job['swapped_at']}"
                            f" restored_backup_id={job['restored_backup_id']}")
        # A second swap would have renamed the first restore's schema aside too: exactly one
        # replaced schema per restore, and it is the one the job recorded.
        replaced = [r[0] for r in await conn.fetch(
            f"SELECT schema_name FROM {ns.CONTROL}.replaced_schemas WHERE tenant_id = $1",
            case.tenant)]
        if replaced != [job["replaced_schema"]]:
            problems.append(f"restore of {case.tenant}: replaced schemas {replaced},"
                            f" job recorded {job['replaced_schema']}")
        row = await conn.fetchrow(f"SELECT uri FROM {ns.CONTROL}.backups WHERE backup_id = $1",
                                  case.backup_id)
        if row is None:
            problems.append(f"restore of {case.tenant}: backup {case.backup_id} not catalogued")
            continue
        manifest = manifest_of(local_path(row["uri"]))["row_counts"]
        counts = {t: int(await conn.fetchval(
            f"SELECT count(*) FROM {quote_ident(ns.tenant(case.tenant))}.{quote_ident(t)}"))
            for t in TABLES}
        want = expected_rows(case)
        if {t: manifest.get(t) for t in TABLES} != want:
            problems.append(f"restore of {case.tenant}: manifest {manifest}, written {want}")
        if counts != {t: manifest.get(t) for t in TABLES}:
            problems.append(f"restore of {case.tenant}: rows {counts}, manifest {manifest}")
        else:
            done += 1
    return problems, done, raced


async def _check_raced(conn: asyncpg.Connection, case: RestoreCase, answer: Envelope | None
                       ) -> list[str]:
    """A restore raced by an erasure: either may win, but the erasure erases everything."""
    problems = []
    if answer is None or answer.type not in ("RestoreCompleted", "RestoreFailed") or (
            answer.type == "RestoreFailed"
            and answer.data.get("reason") not in ("erasing", "unknown_tenant")):
        problems.append(f"restore of {case.tenant} raced by its erasure: answered"
                        f" {answer and answer.type} {answer and answer.data}")
    jobs = await conn.fetch(f"SELECT * FROM {ns.CONTROL}.backup_jobs WHERE tenant_id = $1"
                            " AND kind = 'restore'", case.tenant)
    if len(jobs) > 1:
        problems.append(f"restore of {case.tenant} raced by its erasure: {len(jobs)} restore jobs")
    swapped = [j for j in jobs if j["swapped_at"] is not None]
    if answer is not None and answer.type == "RestoreFailed" and swapped:
        problems.append(f"restore of {case.tenant} failed ({answer.data}) but swapped")
    replaced = [r[0] for r in await conn.fetch(
        f"SELECT schema_name FROM {ns.CONTROL}.replaced_schemas WHERE tenant_id = $1", case.tenant)]
    left = [j["replaced_schema"] for j in swapped if j["replaced_schema"] and await conn.fetchval(
        "SELECT 1 FROM pg_namespace WHERE nspname = $1", j["replaced_schema"])]
    if replaced or left:
        problems.append(f"erased tenant {case.tenant} keeps replaced schemas {replaced + left}")
    return problems


async def orphan_replaced_schemas(conn: asyncpg.Connection) -> list[str]:
    """A schema named like a restore's replaced one that no job or grace row knows of."""
    known = {r[0] for r in await conn.fetch(
        f"SELECT schema_name FROM {ns.CONTROL}.replaced_schemas")}
    found = {r[0] for r in await conn.fetch(
        r"SELECT nspname FROM pg_namespace WHERE nspname LIKE 'replaced\_%'")}
    return [f"replaced schema {s} known to no restore" for s in sorted(found - known)]


async def check_nothing_stuck(conn: asyncpg.Connection, settings: Settings, tenants: list[str],
                              limit_s: float) -> list[str]:
    """No parked event left undone and every consumer group's lag back to 0."""
    problems: list[str] = []

    async def unparked() -> bool:
        return not await conn.fetchval(
            f"SELECT count(*) FROM {ns.CONTROL}.parked_events WHERE status = 'parked'"
            " AND tenant_id = ANY($1::text[])", tenants)

    try:
        await wait_until(unparked, limit_s, what="parked events to be handled", interval=1.0)
    except AssertionError:
        for r in await conn.fetch(
                f"SELECT consumer_group, tenant_id, event_id, attempts, last_error"
                f" FROM {ns.CONTROL}.parked_events WHERE status = 'parked'"
                " AND tenant_id = ANY($1::text[])", tenants):
            problems.append(f"parked event left undone: {dict(r)}")
    for group, topic in GROUPS:
        lag: dict[str, int] = {}

        async def caught_up(group: str = group, topic: str = topic,
                            lag: dict[str, int] = lag) -> bool:
            lag["n"] = await group_lag(settings, group, topic)
            return lag["n"] == 0

        try:
            await wait_until(caught_up, limit_s, what=f"{group} lag 0", interval=1.0)
        except AssertionError:
            problems.append(f"group {group} on {topic}: lag {lag.get('n')} after {limit_s:.0f}s")
    return problems
