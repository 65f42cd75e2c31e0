"""One trace across every hop, on the real stack: the W3C context a request carries reaches its
result (under the handler's span), the worker's spans share its trace id, and ``tenantctl
trace`` shows the causal chain of a flow, dead letters included."""

import asyncio
import json
import sys
from pathlib import Path

import pytest
from cloudevents.v1.http import CloudEvent
from cloudevents.v1.kafka import to_structured

from adapters.kafka.producer import KafkaEventPublisher
from contracts import codec, topics
from contracts.tracecontext import TraceParent, trace_of
from runtime.settings import Settings
from tests.support.kafka import ResultLog, TopicTail, publish, requested
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import REPO_ROOT, WorkerProcess

pytestmark = pytest.mark.stack
RESULT_S = 60.0
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
REQUEST_SPAN = "00f067aa0ba902b7"


def _spans(log: str, trace_id: str) -> dict[str, dict]:
    """The console exporter's JSON spans (one per line) of ``trace_id``, by name."""
    found: dict[str, dict] = {}
    for line in log.splitlines():
        if not line.startswith("{") or '"context"' not in line:
            continue
        try:
            span = json.loads(line)
        except ValueError:
            continue
        if span.get("context", {}).get("trace_id") == f"0x{trace_id}":
            found[span["name"]] = span
    return found


async def test_the_request_trace_reaches_the_result_and_every_span(
    session_worker: SessionWorker, settings: Settings, publisher: KafkaEventPublisher,
    results: ResultLog, tenants: TenantIds, log_dir: Path,
) -> None:
    await session_worker.stop()
    worker = WorkerProcess(("provisioner", "relay"), log_dir / "tracing-console.log",
                           env={"TENANT_OTEL_EXPORTER": "console"})
    try:
        await worker.start()
        request = requested(tenants.new()).model_copy(
            update={"traceparent": f"00-{TRACE_ID}-{REQUEST_SPAN}-01", "tracestate": "team=a"}
        )
        await publish(publisher, request)
        result = await results.first(request.id, RESULT_S)
        assert result.type == "TenantProvisioned", result
        parent, state = trace_of(result)
        assert parent is not None, result.extensions
        assert parent.trace_id == TRACE_ID and parent.span_id != REQUEST_SPAN
        assert state == "team=a"
        # Spans name the topic as Kafka knows it: the session's namespaced name.
        consume_name = f"process {settings.names.topics.lifecycle}"
        send_name = f"send {settings.names.topics.events}"
        wanted = {consume_name, "db.transaction", send_name}
        spans = await wait_until(
            lambda: (s := _spans(worker.log_text(), TRACE_ID)) and wanted <= s.keys() and s,
            RESULT_S, what=f"spans {wanted} in the worker's log",
        )
        consume, transaction = spans[consume_name], spans["db.transaction"]
        assert consume["parent_id"] == f"0x{REQUEST_SPAN}"
        assert transaction["parent_id"] == consume["context"]["span_id"]
        # The result names the span that wrote it; the relay's publish is that span's child.
        assert transaction["context"]["span_id"] == f"0x{parent.span_id}"
        assert spans[send_name]["parent_id"] == f"0x{parent.span_id}"
    finally:
        assert await worker.terminate(settings.shutdown_grace_s + 10) == 0
        await session_worker.start()


async def _tenantctl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tenantctl.cli", *args, cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_trace_shows_an_sdk_request_and_its_result(
    session_worker: SessionWorker, publisher: KafkaEventPublisher, results: ResultLog,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    event = CloudEvent(
        {"type": "TenantRequested", "source": "urn:other-team", "subject": tenant_id},
        {"tenant_id": tenant_id, "plan": "free"},
    )
    message = to_structured(event)  # none of our extensions: no correlationid, no traceparent
    await publisher.publish(topics.LIFECYCLE, topics.partition_key(tenant_id), message.value, [])
    result = await results.first(event["id"], RESULT_S)
    code, out, err = await _tenantctl("trace", event["id"])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"TenantRequested {event['id']}"), out
    assert "handled by tenant-provisioner" in lines[1], out
    assert any(line.startswith(f"└─ TenantProvisioned {result.id}") for line in lines), out
    code, out, err = await _tenantctl("trace", result.id, "--json")
    assert code == 0, err
    (root,) = json.loads(out)
    assert root["id"] == event["id"] and root["hops"][0]["topic"] == topics.LIFECYCLE
    (child,) = root["children"]
    assert child["id"] == result.id and child["hops"][0]["group"] == "tenant-provisioner"
    # The SDK's request had no traceparent: its result started a trace.
    assert TraceParent.parse(child["traceparent"]) is not None


async def test_trace_shows_the_dead_letter_hop_with_its_group(
    session_worker: SessionWorker, settings: Settings, publisher: KafkaEventPublisher,
    tenants: TenantIds,
) -> None:
    request = requested(tenants.new())
    wrong_key = b"not-" + request.subject.encode()
    async with TopicTail(settings, topics.DLQ) as dlq:
        await publisher.publish(topics.LIFECYCLE, wrong_key, codec.encode(request), [])
        await wait_until(lambda: dlq.with_key(wrong_key), RESULT_S, what="the dead letter")
    code, out, err = await _tenantctl("trace", request.id, "--json")
    assert code == 0, err
    (root,) = json.loads(out)
    kinds = [(h["kind"], h["topic"], h["group"], h["reason"]) for h in root["hops"]]
    assert kinds == [
        ("published", topics.LIFECYCLE, "tenant-provisioner", None),
        ("dead_lettered", topics.DLQ, "tenant-provisioner", codec.KEY_MISMATCH),
    ], kinds
    code, out, err = await _tenantctl("trace", "no-such-flow")
    assert code == 4 and out == "", (code, out, err)
    assert len(err.strip().splitlines()) == 1 and "no-such-flow" in err
