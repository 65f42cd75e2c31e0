"""/healthz, /readyz and /metrics of a running worker."""

import json
import os
import re
import secrets

import pytest

from adapters.kafka.producer import KafkaEventPublisher
from contracts import topics
from tests.support.kafka import ResultLog, keys_covering, publish, requested
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import http_get

pytestmark = pytest.mark.stack
# The label is the session's (namespaced) consumer group, as Kafka names it.
PROCESSED = re.compile(
    r'^tenant_events_total\{group="' + re.escape(f"{os.environ['TENANT_NAMESPACE']}-tenant-provisioner")
    + r'",outcome="processed",type="TenantRequested"\} (\S+)$',
    re.MULTILINE,
)


async def test_healthz_is_ok(session_worker: SessionWorker) -> None:
    status, body = await http_get(session_worker.process.port, "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})


async def test_readyz_checks_every_dependency(session_worker: SessionWorker) -> None:
    status, body = await http_get(session_worker.process.port, "/readyz")
    assert status == 200
    report = json.loads(body)
    assert report["status"] == "ok"
    assert {"postgres", "kafka", "redis"} <= set(report["checks"])
    assert set(report["checks"].values()) == {"ok"}


async def test_unknown_path_is_404(session_worker: SessionWorker) -> None:
    status, _ = await http_get(session_worker.process.port, "/nope")
    assert status == 404


async def test_metrics_count_events_of_the_provisioner_group(
    session_worker: SessionWorker,
    results: ResultLog,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
) -> None:
    # One request per partition, so whichever partitions this worker holds, it handles one.
    partitions = len(await publisher.partitions_for(topics.LIFECYCLE))
    ids = [tenants.track(t) for t in keys_covering(partitions, f"t_{secrets.token_hex(4)}_")]
    requests = [requested(t) for t in ids]
    for request in requests:
        await publish(publisher, request)
    await results.all_of([r.id for r in requests])

    async def processed() -> float:
        _, body = await http_get(session_worker.process.port, "/metrics")
        match = PROCESSED.search(body.decode())
        return float(match.group(1)) if match else 0.0

    assert await wait_until(processed, 15, what="tenant_events_total processed sample") >= 1
    _, body = await http_get(session_worker.process.port, "/metrics")
    assert b"tenant_handler_duration_seconds_count" in body
