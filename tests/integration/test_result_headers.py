"""The Kafka headers of published results, header by header against the envelope in the value:
``ce_type``, ``ce_id``, ``ce_correlationid`` and ``content-type`` in both content modes, so
tools can filter results without parsing them."""

from pathlib import Path

import pytest

from adapters.kafka.producer import KafkaEventPublisher
from contracts import codec, topics
from contracts.envelope import CONTENT_TYPE, JSON_MEDIA_TYPE
from runtime.settings import Settings
from tests.support.kafka import TopicTail, publish, requested
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.stack

RESULT_S = 60.0


@pytest.mark.parametrize("mode", ["structured", "binary"])
async def test_results_carry_ce_headers_matching_their_envelope(
    mode: str,
    session_worker: SessionWorker,
    settings: Settings,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
    log_dir: Path,
) -> None:
    await session_worker.stop()
    worker = WorkerProcess(
        ("provisioner", "relay"),
        log_dir / f"headers-{mode}.log",
        env={"TENANT_RESULT_CONTENT_MODE": mode},
    )
    try:
        await worker.start()
        provisioned, refused = tenants.new(), tenants.new()
        requests = [requested(provisioned), requested(refused, plan="no-such-plan")]
        async with TopicTail(settings, topics.EVENTS) as events:
            for request in requests:
                await publish(publisher, request)
            await wait_until(
                lambda: all(events.with_key(r.subject.encode()) for r in requests),
                RESULT_S,
                what="both results",
            )
            records = [events.with_key(r.subject.encode())[0] for r in requests]
    finally:
        assert await worker.terminate(settings.shutdown_grace_s + 10) == 0
        await session_worker.start()

    types = []
    for request, record in zip(requests, records, strict=True):
        headers = dict(record.headers)
        envelope = codec.read_envelope(record.value, record.headers)
        types.append(envelope.type)
        assert envelope.causationid == request.id
        assert headers["ce_type"].decode() == envelope.type
        assert headers["ce_id"].decode() == envelope.id
        assert headers["ce_correlationid"].decode() == envelope.correlationid
        expected = CONTENT_TYPE if mode == "structured" else JSON_MEDIA_TYPE
        assert headers["content-type"].decode() == expected
        if mode == "binary":  # every ce_* header is the envelope's attribute, nothing else
            attributes = envelope.model_dump(mode="json", exclude_none=True)
            for name, value in headers.items():
                if name.startswith("ce_"):
                    assert value.decode() == str(attributes[name.removeprefix("ce_")]), name
    assert types == ["TenantProvisioned", "TenantProvisioningFailed"]
