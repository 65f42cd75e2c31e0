"""Any CloudEvents producer is served: the official Python SDK in both content modes of the Kafka
protocol binding, kcat with ``ce_*`` headers, and results the SDK can read in either mode.

The SDK's events carry only what the spec requires (no ``correlationid``, no ``time`` in the
kcat case); each must be provisioned, not dead-lettered."""

import asyncio
import json
import uuid
from pathlib import Path

import asyncpg
import pytest
from cloudevents.v1.http import CloudEvent
from cloudevents.v1.kafka import (
    KafkaMessage,
    from_binary,
    from_structured,
    to_binary,
    to_structured,
)

from adapters.kafka.producer import KafkaEventPublisher
from contracts import topics
from contracts.codec import NOT_CLOUDEVENT
from runtime.settings import Settings
from tests.support import names as ns
from tests.support import postgres as db
from tests.support.kafka import ResultLog, TopicTail
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.stack
RESULT_S = 60.0


def _sdk_event(tenant_id: str, **attributes: str) -> CloudEvent:
    return CloudEvent(
        {"type": "TenantRequested", "source": "urn:other-team", "subject": tenant_id, **attributes},
        {"tenant_id": tenant_id, "plan": "free"},
    )


async def _send(publisher: KafkaEventPublisher, message: KafkaMessage, tenant_id: str) -> None:
    headers = [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in message.headers.items()]
    await publisher.publish(topics.LIFECYCLE, topics.partition_key(tenant_id), message.value, headers)


async def _provisioned(results: ResultLog, request_id: str) -> None:
    result = await results.first(request_id, RESULT_S)
    assert result.type == "TenantProvisioned", result
    # No correlationid on the request: the request correlates with itself.
    assert result.correlationid == request_id


async def test_sdk_structured_mode_without_our_extensions(
    session_worker: SessionWorker, publisher: KafkaEventPublisher, results: ResultLog,
    tenants: TenantIds, pg: asyncpg.Connection,
) -> None:
    tenant_id = tenants.new()
    event = _sdk_event(tenant_id)
    message = to_structured(event)
    assert b"correlationid" not in message.value and not message.headers  # what the SDK sends
    await _send(publisher, message, tenant_id)
    await _provisioned(results, event["id"])
    assert await db.schema_exists(pg, ns.tenant(tenant_id))


async def test_sdk_binary_mode_with_content_type_parameters(
    session_worker: SessionWorker, publisher: KafkaEventPublisher, results: ResultLog,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    event = _sdk_event(tenant_id, datacontenttype="application/json; charset=utf-8")
    message = to_binary(event)
    assert "ce_specversion" in message.headers and b"specversion" not in message.value
    await _send(publisher, message, tenant_id)
    await _provisioned(results, event["id"])


async def test_kcat_binary_mode_without_time(
    session_worker: SessionWorker, settings: Settings, results: ResultLog, tenants: TenantIds,
    tmp_path: Path,
) -> None:
    """A producer in another tool: kcat, attributes as -H headers, no ``time`` at all."""
    tenant_id = tenants.new()
    event_id = str(uuid.uuid4())
    value = tmp_path / "data.json"
    value.write_text(json.dumps({"tenant_id": tenant_id, "plan": "free"}))
    headers = {
        "ce_specversion": "1.0", "ce_id": event_id, "ce_source": "urn:kcat",
        "ce_type": "TenantRequested", "ce_subject": tenant_id, "content-type": "application/json",
    }
    argv = ["kcat", "-P", "-b", settings.kafka_bootstrap, "-t", settings.names.topics.lifecycle,
            "-k", tenant_id, *[a for k, v in headers.items() for a in ("-H", f"{k}={v}")],
            str(value)]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    await _provisioned(results, event_id)


async def test_binary_record_that_is_not_a_cloudevent_is_dead_lettered(
    session_worker: SessionWorker, settings: Settings, publisher: KafkaEventPublisher,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    value = json.dumps({"tenant_id": tenant_id, "plan": "free"}).encode()
    headers = [("ce_specversion", b"1.0"), ("ce_type", b"TenantRequested"),
               ("ce_subject", tenant_id.encode()), ("content-type", b"application/json")]
    async with TopicTail(settings, topics.DLQ) as dlq:
        await publisher.publish(topics.LIFECYCLE, topics.partition_key(tenant_id), value, headers)
        records = await wait_until(lambda: dlq.with_key(tenant_id.encode()), RESULT_S,
                                   what="the dead letter")
    record = records[0]
    why = dict(record.headers)
    assert why["x-dlq-reason"] == NOT_CLOUDEVENT.encode()
    assert b"id" in why["x-dlq-detail"] and b"source" in why["x-dlq-detail"]
    assert record.value == value  # the original bytes, untouched
    assert ("ce_specversion", b"1.0") in record.headers


@pytest.mark.parametrize("mode", ["structured", "binary"])
async def test_results_parse_with_the_sdk(
    mode: str, session_worker: SessionWorker, settings: Settings,
    publisher: KafkaEventPublisher, tenants: TenantIds, log_dir: Path,
) -> None:
    """TENANT_RESULT_CONTENT_MODE switches the results; the SDK reads them either way."""
    await session_worker.stop()
    worker = WorkerProcess(("provisioner", "relay"), log_dir / f"results-{mode}.log",
                           env={"TENANT_RESULT_CONTENT_MODE": mode})
    try:
        await worker.start()
        tenant_id = tenants.new()
        event = _sdk_event(tenant_id)
        async with TopicTail(settings, topics.EVENTS) as events:
            await _send(publisher, to_structured(event), tenant_id)
            records = await wait_until(lambda: events.with_key(tenant_id.encode()), RESULT_S,
                                       what="the result record")
        record = records[0]
        message = KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
        parsed = (from_binary if mode == "binary" else from_structured)(message)
        assert parsed["type"] == "TenantProvisioned"
        assert parsed["causationid"] == event["id"]
        assert parsed["subject"] == tenant_id
        assert parsed.data["schema_name"] == ns.tenant(tenant_id)
        headers = dict(record.headers)
        if mode == "binary":
            assert headers["ce_type"] == b"TenantProvisioned"
            assert headers["content-type"] == b"application/json"
            assert b"specversion" not in record.value
        else:
            assert headers["content-type"].startswith(b"application/cloudevents+json")
    finally:
        assert await worker.terminate(settings.shutdown_grace_s + 10) == 0
        await session_worker.start()
