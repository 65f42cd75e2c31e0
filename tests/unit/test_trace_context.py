"""The W3C trace context on our events: parsing, carrying it, and the spans that continue it."""

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adapters import trace_context
from contracts import codec
from contracts.events import TenantProvisioned, TenantRequested
from contracts.tracecontext import TraceParent, trace_of, with_trace
from tests.support.tracing import captured_spans

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
HEADER = f"00-{TRACE_ID}-{SPAN_ID}-01"


def _request(**extensions: str) -> codec.Envelope:
    env = codec.envelope_for(TenantRequested(tenant_id="t_trace", plan="free"))
    return env.model_copy(update=extensions) if extensions else env


def _result(cause: codec.Envelope) -> codec.Envelope:
    event = TenantProvisioned(tenant_id="t_trace", plan="free", schema_name="tenant_t_trace",
                              schema_version=1, role_name="tenant_t_trace")
    return codec.envelope_for(event, cause=cause)


@pytest.mark.parametrize(
    "text",
    [
        None, "", "garbage", f"00-{TRACE_ID}-{SPAN_ID}", f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
        f"00-{'0' * 32}-{SPAN_ID}-01", f"00-{TRACE_ID}-{'0' * 16}-01", f"ff-{TRACE_ID}-{SPAN_ID}-01",
    ],
)
def test_an_invalid_traceparent_is_ignored(text: object) -> None:
    assert TraceParent.parse(text) is None


def test_a_valid_traceparent_round_trips() -> None:
    parent = TraceParent.parse(HEADER)
    assert parent == TraceParent(TRACE_ID, SPAN_ID, "01")
    assert str(parent) == HEADER
    child = parent.child()
    assert child.trace_id == TRACE_ID and child.span_id != SPAN_ID and child.flags == "01"


def test_the_context_travels_in_both_content_modes() -> None:
    env = with_trace(_request(), TraceParent(TRACE_ID, SPAN_ID), "vendor=x")
    for mode in ("structured", "binary"):
        value, headers = codec.encode_record(env, mode)  # type: ignore[arg-type]
        read = codec.read_envelope(value, [(k, v.encode()) for k, v in headers.items()])
        assert trace_of(read) == (TraceParent(TRACE_ID, SPAN_ID), "vendor=x"), mode
    # Without a tracestate none is written (not a null).
    assert b"tracestate" not in codec.encode(with_trace(env, TraceParent(TRACE_ID, SPAN_ID)))


def test_without_a_tracer_a_result_continues_the_trace_under_a_new_span() -> None:
    request = _request(traceparent=HEADER)
    record = SimpleNamespace(topic="tenants.lifecycle", partition=0, offset=7)
    with trace_context.consume_span("tenant-provisioner", record, request):
        stamped = trace_context.stamp(_result(request))
    parent, _ = trace_of(stamped)
    assert parent is not None and parent.trace_id == TRACE_ID and parent.span_id != SPAN_ID


def test_without_a_tracer_a_request_without_context_starts_a_trace() -> None:
    request = _request()
    record = SimpleNamespace(topic="tenants.lifecycle", partition=0, offset=8)
    with trace_context.consume_span("tenant-provisioner", record, request):
        first = trace_of(trace_context.stamp(_result(request)))[0]
        second = trace_of(trace_context.stamp(_result(request)))[0]
    assert first is not None and second is not None and first.trace_id != second.trace_id


def _untraced_answers(request: codec.Envelope) -> tuple[object, ...]:
    """What stamp and current_trace answer for a result of ``request`` with no tracer: trace
    id, tracestate, whether the span id is new, the context a job would store."""
    record = SimpleNamespace(topic="tenants.lifecycle", partition=0, offset=10)
    with trace_context.consume_span("tenant-provisioner", record, request):
        with trace_context.span("db.transaction"):
            parent, state = trace_of(trace_context.stamp(_result(request)))
            stored = trace_context.current_trace()
    assert parent is not None
    own, _ = trace_of(request)
    return (parent.trace_id if own else "new", state, own is None or parent.span_id != own.span_id,
            stored)


@pytest.mark.parametrize(
    "extensions",
    [{}, {"traceparent": HEADER}, {"traceparent": HEADER, "tracestate": "vendor=x,team=a"},
     {"traceparent": HEADER, "tracestate": "not a valid=state=,,"},
     {"traceparent": "garbage", "tracestate": "vendor=x"}],
)
def test_without_a_tracer_the_cheap_path_answers_as_the_no_op_spans_would(
    extensions: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a tracer the consumed event's context is kept in a variable, not in no-op
    OpenTelemetry spans; results and stored job contexts must come out the same."""
    request = _request(**extensions)
    cheap = _untraced_answers(request)
    monkeypatch.setattr(trace_context, "_spans_recorded", lambda: True)  # no-op spans again
    assert cheap == _untraced_answers(request)


def test_a_context_continued_inside_a_consumed_event_is_the_one_results_continue() -> None:
    record = SimpleNamespace(topic="tenants.lifecycle", partition=0, offset=11)
    other = TraceParent.new_trace()
    with trace_context.consume_span("tenant-provisioner", record, _request(traceparent=HEADER)):
        with trace_context.continued_span("job", str(other)):
            parent = trace_of(trace_context.stamp(_result(_request())))[0]
            assert trace_context.current_trace()[0] == str(other)
    assert parent is not None and parent.trace_id == other.trace_id


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    with captured_spans(monkeypatch) as exporter:
        yield exporter


def test_with_a_tracer_results_carry_the_span_that_wrote_them(
    spans: InMemorySpanExporter,
) -> None:
    request = _request(traceparent=HEADER, tracestate="vendor=x")
    record = SimpleNamespace(topic="tenants.lifecycle", partition=0, offset=9)
    with trace_context.consume_span("tenant-provisioner", record, request):
        with trace_context.span("db.transaction") as db:
            stamped = trace_context.stamp(_result(request))
            db_id = f"{db.get_span_context().span_id:016x}"
    parent, state = trace_of(stamped)
    assert parent == TraceParent(TRACE_ID, db_id, "01") and state == "vendor=x"
    finished = {s.name: s for s in spans.get_finished_spans()}
    consume, transaction = finished["process tenants.lifecycle"], finished["db.transaction"]
    assert {f"{s.context.trace_id:032x}" for s in finished.values()} == {TRACE_ID}
    assert consume.parent is not None and f"{consume.parent.span_id:016x}" == SPAN_ID
    assert transaction.parent is not None
    assert transaction.parent.span_id == consume.context.span_id
    assert consume.attributes["messaging.consumer.group.name"] == "tenant-provisioner"


async def test_traced_coroutines_are_spans_with_their_stream_size(
    spans: InMemorySpanExporter,
) -> None:
    @trace_context.traced("dump_pipeline.backup")
    async def dump() -> SimpleNamespace:
        return SimpleNamespace(bytes=42)

    await dump()
    (span,) = spans.get_finished_spans()
    assert span.name == "dump_pipeline.backup" and span.attributes["stream.bytes"] == 42
