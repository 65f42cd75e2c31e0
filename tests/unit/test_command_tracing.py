"""Spans where a request enters or is tried again, with fakes: the HTTP API's command span
continues the caller's ``traceparent`` header and the request event carries it; the re-driver's
try of a parked record continues the record's own trace."""

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adapters import trace_context
from api.app import create_app
from consumers.redriver import Redriver
from contracts.events import TenantRequested
from contracts.tracecontext import TraceParent
from domain.errors import TransientError
from tests.support.tracing import captured_spans
from tests.unit.api_fakes import fake_context
from tests.unit.delivery_fakes import (
    Clock,
    FakeDeadLetters,
    FakeParkedEvents,
    Partition,
    make_delivery,
    requested,
    retry_policy,
)
from tests.unit.test_api_app import auth

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
HEADER = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    with captured_spans(monkeypatch) as exporter:
        # The global provider stays the no-op one: say spans go somewhere, as an installed SDK does.
        monkeypatch.setattr(trace_context, "recording", lambda: True)
        yield exporter


@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    ctx, _, _, publisher = fake_context()
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client, publisher


def _published_parent(publisher: Any) -> TraceParent:
    [(_, _, value, headers)] = publisher.sent
    parent = TraceParent.parse(json.loads(value).get("traceparent"))
    assert parent is not None, value
    # Structured mode: the body says it; the ce_ headers repeat nothing else.
    assert all(k != "ce_traceparent" for k, _ in headers)
    return parent


async def test_a_command_continues_the_callers_trace(api: Any) -> None:
    client, publisher = api
    answer = await client.post("/v1/tenants", json={"tenant_id": "acme"},
                               headers={**auth(), "traceparent": HEADER, "tracestate": "team=a"})
    assert answer.status_code == 202, answer.text
    parent = _published_parent(publisher)
    assert parent.trace_id == TRACE_ID and parent.span_id != CALLER_SPAN
    assert json.loads(publisher.sent[0][2])["tracestate"] == "team=a"


async def test_a_command_without_or_with_a_bad_traceparent_starts_a_trace(api: Any) -> None:
    client, publisher = api
    answer = await client.post("/v1/tenants", json={"tenant_id": "acme"},
                               headers={**auth(), "traceparent": "garbage"})
    assert answer.status_code == 202, answer.text
    assert _published_parent(publisher).trace_id != TRACE_ID


async def test_with_a_tracer_the_command_span_is_the_request_events_parent(
    api: Any, spans: InMemorySpanExporter,
) -> None:
    client, publisher = api
    answer = await client.post("/v1/tenants", json={"tenant_id": "acme"},
                               headers={**auth(), "traceparent": HEADER})
    assert answer.status_code == 202, answer.text
    finished = {s.name: s for s in spans.get_finished_spans()}
    command, send = finished["command TenantRequested"], finished["send tenants.lifecycle"]
    assert command.parent is not None and f"{command.parent.span_id:016x}" == CALLER_SPAN
    assert command.attributes["enduser.id"] == "alice"
    assert _published_parent(publisher) == TraceParent(
        TRACE_ID, f"{command.context.span_id:016x}", "01")
    assert send.parent is not None and send.parent.span_id == command.context.span_id


class Recorder:
    """Fails transiently while ``blocked``; records the trace current when it runs."""

    def __init__(self) -> None:
        self.blocked = True
        self.seen: list[tuple[str | None, str | None]] = []

    async def __call__(self, decoded: Any) -> Any:
        self.seen.append(trace_context.current_trace())
        if self.blocked:
            raise TransientError("lock_not_available")
        return None


async def _redrive_traced(handler: Recorder) -> None:
    clock = Clock()
    parking = FakeParkedEvents(clock)
    delivery = make_delivery({TenantRequested: handler}, retry=retry_policy(1, budget_attempts=100,
                             budget_s=3600), parking=parking, dead_letters=FakeDeadLetters(),
                             clock=clock)
    request = requested("acme").model_copy(update={"traceparent": HEADER})
    await delivery(Partition().message(request))
    assert parking.statuses("acme") == ["parked"]
    handler.blocked = False
    clock.now += 10
    assert await Redriver(delivery, 0.01).drive_one()
    assert parking.statuses("acme") == ["done"]


async def test_a_redriven_record_continues_its_own_trace() -> None:
    handler = Recorder()
    await _redrive_traced(handler)
    redriven = TraceParent.parse(handler.seen[-1][0])
    assert redriven is not None and redriven.trace_id == TRACE_ID


async def test_with_a_tracer_the_redrive_span_is_a_child_of_the_parked_request(
    spans: InMemorySpanExporter,
) -> None:
    handler = Recorder()
    await _redrive_traced(handler)
    (redrive,) = [s for s in spans.get_finished_spans() if s.name == "redrive tenants.lifecycle"]
    assert f"{redrive.context.trace_id:032x}" == TRACE_ID
    assert redrive.parent is not None and f"{redrive.parent.span_id:016x}" == CALLER_SPAN
    assert redrive.attributes["tenant.redrive"] is True
    assert handler.seen[-1][0] == f"00-{TRACE_ID}-{redrive.context.span_id:016x}-01"
