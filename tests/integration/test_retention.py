"""Retention on the real stack: old bookkeeping rows pruned in batches, recent and unsent rows
and unfinished jobs kept.

Runs in a scratch control schema built by the real control migrations, so the session worker
(its relay, its own pruning) never touches these rows.
"""

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from adapters.postgres.control_schema import ensure_control_schema
from adapters.postgres.retention import PostgresRetention
from producers.retention import Retention
from runtime.settings import Settings
from tests.support.stack import SessionWorker

pytestmark = pytest.mark.stack

DAY = 86_400
OLD = "now() - interval '10 days'"  # older than every age below
RECENT = "now() - interval '1 hour'"


@pytest.fixture
async def scratch(
    pg: asyncpg.Connection, settings: Settings, session_worker: SessionWorker
) -> AsyncIterator[str]:
    schema = f"retention_test_{secrets.token_hex(4)}"
    names = settings.names
    await ensure_control_schema(
        pg, schema, names.app_role, api_reader_role=names.api_reader_role
    )
    yield schema
    await pg.execute(f"DROP SCHEMA {schema} CASCADE")


async def _ids(pg: asyncpg.Connection, sql: str) -> set[str]:
    return {r[0] for r in await pg.fetch(sql)}


async def test_old_rows_are_pruned_and_recent_unsent_or_unfinished_are_kept(
    pg: asyncpg.Connection, settings: Settings, scratch: str
) -> None:
    s = scratch
    await pg.execute(
        f"INSERT INTO {s}.inbox (consumer_group, event_id, event_type, processed_at) VALUES"
        f" ('g', 'old-1', 'T', {OLD}), ('g', 'old-2', 'T', {OLD}), ('g', 'old-3', 'T', {OLD}),"
        f" ('g', 'recent', 'T', {RECENT})"
    )
    await pg.execute(
        f"INSERT INTO {s}.outbox (event_id, topic, key, event_type, payload, created_at)"
        f" VALUES ('old-sent', 't', '', 'T', '', {OLD}), ('old-unsent', 't', '', 'T', '', {OLD}),"
        f" ('recent-sent', 't', '', 'T', '', {RECENT})"
    )
    # Staged rows are queued for the relay; it has published (dequeued) all but one.
    await pg.execute(
        f"DELETE FROM {s}.outbox_pending WHERE id IN (SELECT id FROM {s}.outbox"
        " WHERE event_id IN ('old-sent', 'recent-sent'))"
    )
    jobs = [
        ("old-succeeded", "succeeded", OLD),
        ("old-failed", "failed", OLD),
        ("old-pending", "pending", OLD),
        ("old-running", "running", OLD),
        ("recent-succeeded", "succeeded", RECENT),
    ]
    for job_id, status, at in jobs:
        await pg.execute(
            f"INSERT INTO {s}.backup_jobs (job_id, kind, tenant_id, cause_id, correlation_id,"
            f" status, updated_at) VALUES ($1, 'backup', 't', $1, 'c', $2, {at})",
            job_id,
            status,
        )
    await pg.execute(
        f"INSERT INTO {s}.backup_job_riders (cause_id, job_id, correlation_id) VALUES"
        " ('rider-of-old', 'old-succeeded', 'c'), ('rider-of-pending', 'old-pending', 'c')"
    )
    await pg.execute(
        f"INSERT INTO {s}.restore_drills (backup_id, tenant_id, ok, report, drilled_at) VALUES"
        f" ('old', 't', true, '{{}}', {OLD}), ('recent', 't', true, '{{}}', {RECENT})"
    )
    await pg.execute(
        f"INSERT INTO {s}.scheduler_state (kind, subject, last_window, updated_at) VALUES"
        f" ('BackupDue', 'gone-tenant', {OLD}, {OLD}),"
        f" ('BackupDue', 'gone-recently', {RECENT}, {RECENT}),"
        f" ('MetricsDue', '*', {OLD}, {OLD})"
    )
    for event_id, status, finished in [
        ("parked-old-done", "done", OLD),
        ("parked-old-dead", "dead_lettered", OLD),
        ("parked-waiting", "parked", None),
        ("parked-recent-done", "done", RECENT),
    ]:
        await pg.execute(
            f"INSERT INTO {s}.parked_events (consumer_group, tenant_id, event_id, topic,"
            " kafka_partition, kafka_offset, record_value, header_names, header_values, status,"
            " attempts, first_failed_at, next_attempt_at, finished_at) VALUES ('g', 't', $1,"
            f" 'topic', 0, 0, '', '{{}}', '{{}}', $2, 1, {OLD}, {OLD},"
            f" {finished or 'NULL'})",
            event_id,
            status,
        )
    pool = await asyncpg.create_pool(settings.pg_dsn.get_secret_value(), min_size=1, max_size=2)
    assert pool is not None
    try:
        ages = {
            f"{table}_retention_s": float(DAY) for table in ("outbox", "jobs", "drills", "ticks")
        }
        # The inbox keeps its default: the redelivery window, here 2 days + 5 minutes.
        ages |= {"inbox_retention_s": None, "event_max_age_s": 2.0 * DAY, "event_max_future_s": 300}
        pruning = settings.model_copy(update={"retention_batch_size": 2, **ages})
        # The scratch schema is named as is (the settings would prefix it with the namespace).
        deleted = await Retention(pruning, pool, PostgresRetention(s)).prune_once()
    finally:
        await pool.close()

    assert deleted == {
        "inbox": 3,  # two batches of 2: the second (1 row) came back short
        "parked_events": 2,  # finished ones, by the inbox's age
        "outbox": 1,
        "backup_jobs": 2,
        "restore_drills": 1,
        "scheduler_state": 1,
        "api_idempotency_keys": 0,
        "api_operations": 0,
    }
    assert await _ids(pg, f"SELECT event_id FROM {s}.inbox") == {"recent"}
    assert await _ids(pg, f"SELECT event_id FROM {s}.parked_events") == {
        "parked-waiting",
        "parked-recent-done",
    }
    assert await _ids(pg, f"SELECT event_id FROM {s}.outbox") == {"old-unsent", "recent-sent"}
    assert await _ids(pg, f"SELECT job_id FROM {s}.backup_jobs") == {
        "old-pending",
        "old-running",
        "recent-succeeded",
    }
    assert await _ids(pg, f"SELECT cause_id FROM {s}.backup_job_riders") == {"rider-of-pending"}
    assert await _ids(pg, f"SELECT backup_id FROM {s}.restore_drills") == {"recent"}
    assert await _ids(pg, f"SELECT subject FROM {s}.scheduler_state") == {"gone-recently", "*"}
    sizes = await PostgresRetention(s).sizes(pg)
    assert sizes["inbox"] == 1 and sizes["backup_job_riders"] == 1


async def test_finished_operations_and_expired_keys_are_pruned_live_keys_kept(
    pg: asyncpg.Connection, settings: Settings, scratch: str
) -> None:
    s = scratch
    ops = [
        ("old-done", True, OLD),
        ("old-done-live-key", True, OLD),  # its key still answers: kept
        ("old-done-expired-key", True, OLD),
        ("old-running", False, OLD),
        ("recent-done", True, RECENT),
    ]
    for op_id, done, at in ops:
        await pg.execute(
            f"INSERT INTO {s}.api_operations (operation_id, kind, actor, event_ids,"
            f" correlation_id, done, updated_at) VALUES ($1, 'T', 'a', '{{e}}', 'c', $2, {at})",
            op_id,
            done,
        )
    await pg.execute(
        f"INSERT INTO {s}.api_idempotency_keys (actor, key, request_hash, operation_id,"
        " expires_at) VALUES ('a', 'live', 'h', 'old-done-live-key', now() + interval '1 hour'),"
        " ('a', 'expired', 'h', 'old-done-expired-key', now() - interval '2 hours')"
    )
    pool = await asyncpg.create_pool(settings.pg_dsn.get_secret_value(), min_size=1, max_size=2)
    assert pool is not None
    try:
        pruning = settings.model_copy(update={"api_operations_retention_s": float(DAY)})
        # The scratch schema is named as is (the settings would prefix it with the namespace).
        deleted = await Retention(pruning, pool, PostgresRetention(s)).prune_once()
    finally:
        await pool.close()
    assert deleted["api_idempotency_keys"] == 1 and deleted["api_operations"] == 2
    assert await _ids(pg, f"SELECT key FROM {s}.api_idempotency_keys") == {"live"}
    assert await _ids(pg, f"SELECT operation_id FROM {s}.api_operations") == {
        "old-done-live-key",
        "old-running",
        "recent-done",
    }
