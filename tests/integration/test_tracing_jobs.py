"""One trace across the hops that run later or elsewhere, on the real stack: a backup's result,
written by the job runner long after its request's span ended, continues that request's trace
(and a request riding on the job, its own); an HTTP command continues the caller's
``traceparent`` header onto its request event and its result."""

import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.backup_jobs import PostgresBackupJobs
from adapters.trace_context import continued_span
from contracts.events import BackupDue
from contracts.tracecontext import TraceParent, trace_of
from domain.job_ids import backup_id_for
from runtime.settings import Settings
from tests.integration.test_tracing import _spans as console_spans
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.api import ApiProcess, DevKeys
from tests.support.kafka import ResultLog
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.stack
RESULT_S = 90.0


def _trace() -> tuple[str, str]:
    """(trace id, traceparent) of a fresh caller span."""
    parent = TraceParent.new_trace()
    return parent.trace_id, str(parent)


async def test_a_command_continues_the_callers_traceparent_to_its_result(
    api: ApiProcess, api_keys: DevKeys, results: ResultLog, tenants: TenantIds,
) -> None:
    trace_id, header = _trace()
    headers = {**api_keys.headers(f"tracer-{secrets.token_hex(3)}"), "traceparent": header}
    async with api.client() as client:
        answer = await client.post("/v1/tenants", json={"tenant_id": tenants.new()},
                                   headers=headers)
    assert answer.status_code == 202, answer.text
    result = await results.first(answer.json()["event_id"], RESULT_S)
    assert result.type == "TenantProvisioned", result
    parent = trace_of(result)[0]
    assert parent is not None and parent.trace_id == trace_id, result.extensions


@pytest.fixture(scope="module")
async def backup_worker(
    session_worker: SessionWorker, settings: Settings, log_dir: Path, pg: asyncpg.Connection,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[WorkerProcess]:
    """provisioner, backup and relay in one worker exporting its spans to its log."""
    await session_worker.stop()
    worker = WorkerProcess(("provisioner", "backup", "relay"), log_dir / "tracing-jobs.log", env={
        **bk.FAST_BACKUP_ENV,
        "TENANT_BACKUP_LOCAL_DIR": str(tmp_path_factory.mktemp("traced-backups")),
        "TENANT_OTEL_EXPORTER": "console",
    })
    try:
        await worker.start()
        yield worker
    finally:
        assert await worker.terminate(settings.shutdown_grace_s + 10) == 0
        await session_worker.start()


async def test_a_backup_result_continues_its_requests_trace(
    backup_worker: WorkerProcess, publisher: KafkaEventPublisher, results: ResultLog,
    tenants: TenantIds, pg: asyncpg.Connection, settings: Settings,
) -> None:
    tenant_id = tenants.new()
    try:
        await bk.provision(publisher, results, tenant_id)
        trace_id, header = _trace()
        request = bk.envelope(BackupDue(tenant_id=tenant_id)).model_copy(
            update={"traceparent": header, "tracestate": "team=b"})
        await bk.send(publisher, request)
        result = await results.first(request.id, RESULT_S)
        assert result.type == "BackupCompleted", result
        parent, state = trace_of(result)
        assert parent is not None and parent.trace_id == trace_id, result.extensions
        assert state == "team=b"
        wanted = {f"process {settings.names.topics.backups}", "db.transaction", "job backup",
                  "dump_pipeline.backup"}
        spans = await wait_until(
            lambda: (s := console_spans(backup_worker.log_text(), trace_id))
            and wanted <= s.keys() and s,
            RESULT_S, what=f"spans {wanted} in the worker's log",
        )
        job = spans["job backup"]
        # The job continues the context stored when the request was accepted, and its result
        # names the job span as the one that wrote it.
        assert job["parent_id"] == spans["db.transaction"]["context"]["span_id"]
        assert job["context"]["span_id"] == f"0x{parent.span_id}"
        assert job["attributes"]["job.id"] == backup_id_for(request.id)
    finally:
        await bk.forget_backups(pg, [tenant_id])


async def test_a_rider_is_answered_in_its_own_trace(
    backup_worker: WorkerProcess, publisher: KafkaEventPublisher, results: ResultLog,
    tenants: TenantIds, pg: asyncpg.Connection,
) -> None:
    tenant_id = tenants.new()
    try:
        await bk.provision(publisher, results, tenant_id)
        jobs = PostgresBackupJobs(ns.CONTROL)
        causes = {str(uuid.uuid4()): _trace() for _ in range(2)}
        # Both accepted in one transaction, before any runner can look: the second rides on the
        # first's job. Each is queued under a span of its own request's trace, as a consumer does.
        async with pg.transaction():
            hosts = []
            for cause, (_, header) in causes.items():
                with continued_span("accept", header):
                    hosts.append(await jobs.add_backup(pg, backup_id_for(cause), tenant_id,
                                                       cause, f"corr-{cause}"))
        assert len(set(hosts)) == 1, hosts
        done = await results.all_of(list(causes), RESULT_S)
        for cause, (trace_id, _) in causes.items():
            assert done[cause].type == "BackupCompleted", done[cause]
            parent = trace_of(done[cause])[0]
            assert parent is not None and parent.trace_id == trace_id, (cause, done[cause])
        rider_trace = list(causes.values())[1][0]
        await wait_until(
            lambda: "answer backup" in console_spans(backup_worker.log_text(), rider_trace),
            RESULT_S, what="the rider's answer span in the worker's log",
        )
    finally:
        await bk.forget_backups(pg, [tenant_id])
