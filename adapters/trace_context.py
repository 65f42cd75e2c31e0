"""OpenTelemetry spans and the W3C trace context on our events (the CloudEvents
distributed-tracing extension, contracts/tracecontext.py).

A consumed record's span continues the request's trace (a request without ``traceparent`` starts
one); the database transaction, the dump pipeline and the relay's publish are spans too; every
result written to the outbox carries the context of the span that wrote it. With no tracer
installed (TENANT_OTEL_EXPORTER=none) the spans are no-ops, yet results still continue the
request's trace: same trace id, a fresh parent span id.

Without a tracer, a consumed event's context is kept in a context variable of ours instead of an
OpenTelemetry span (``_CAUSE``): starting, attaching and ending no-op spans and parsing the
context through the propagator cost more than the rest of a repeated request's handling, and
the batch path runs thousands of events a second. What ``stamp`` and ``current_trace`` answer
is the same either way (tests/unit/test_trace_context.py compares them).
"""

import functools
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.environment_variables import OTEL_PYTHON_TRACER_PROVIDER
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contracts.codec import InvalidMessage, read_envelope
from contracts.envelope import Envelope
from contracts.tracecontext import (
    TRACEPARENT,
    TRACESTATE,
    TraceParent,
    trace_attributes,
    trace_of,
    with_trace,
)

# The proxy tracer follows whatever provider runtime/tracing.py installs, even after import.
_tracer = trace.get_tracer("tenant-service")
_propagator = TraceContextTextMapPropagator()
Attributes = Mapping[str, str | int | bool]
# The context of the event being consumed when no tracer is installed: (traceparent, tracestate)
# it continues, (None, None) for none; None when unset (the OpenTelemetry context applies).
_CAUSE: ContextVar[tuple[TraceParent | None, str | None] | None] = ContextVar(
    "trace_cause", default=None
)
P = ParamSpec("P")
R = TypeVar("R")


# Whether the environment names a provider, which get_tracer_provider() installs when first asked.
_PROVIDER_IN_ENV = OTEL_PYTHON_TRACER_PROVIDER in os.environ


def recording() -> bool:
    """Whether spans go anywhere (an SDK provider is installed), so costly extras can be skipped."""
    # While none is installed, get_tracer_provider() looks os.environ up on every call: 3% of a
    # consumer's CPU, asked a few times per event. OpenTelemetry keeps the installed provider in
    # this module global (set once, never unset); none there and none named: none at all.
    if trace._TRACER_PROVIDER is None and not _PROVIDER_IN_ENV:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _spans_recorded() -> bool:
    """Whether ``_tracer`` makes real spans: through the proxy, once an SDK provider is
    installed; or a tracer put in its place (tests do)."""
    tracer = _tracer
    if isinstance(tracer, trace.ProxyTracer):
        return recording()
    return not isinstance(tracer, trace.NoOpTracer)


def parent_of(envelope: Envelope | None) -> otel_context.Context:
    """The context an event's ``traceparent``/``tracestate`` continue (empty: a new trace)."""
    if envelope is None:
        return otel_context.Context()
    parent, state = trace_of(envelope)
    return context_of(str(parent) if parent else None, state)


def context_of(traceparent: str | None, tracestate: str | None = None) -> otel_context.Context:
    """The context a stored or received ``traceparent`` continues (empty when absent or invalid:
    a new trace, never an error)."""
    parent = TraceParent.parse(traceparent)
    if parent is None:
        return otel_context.Context()
    carrier = {TRACEPARENT: str(parent)}
    if tracestate and tracestate.strip():
        carrier[TRACESTATE] = tracestate.strip()[:512]
    return _propagator.extract(carrier, context=otel_context.Context())


def current_trace() -> tuple[str | None, str | None]:
    """(traceparent, tracestate) of the current span, to store with work done later (a job):
    (None, None) when no span is current."""
    cause = _CAUSE.get()
    if cause is not None:
        parent, state = cause
        return (str(parent), state) if parent is not None else (None, None)
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    parent = TraceParent(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", f"{ctx.trace_flags:02x}")
    return str(parent), ctx.trace_state.to_header() or None


@contextmanager
def continued_span(
    name: str,
    traceparent: str | None,
    tracestate: str | None = None,
    attributes: Attributes | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span]:
    """A span continuing a stored or received context (a job's request, an HTTP caller's
    ``traceparent`` header), current while the block runs; a new trace when there is none.

    Without a tracer installed the span is a no-op that still carries the context, so what is
    written under it (stamp) continues the stored trace."""
    token = _CAUSE.set(None)  # this context, not an enclosing consumed event's
    try:
        with _tracer.start_as_current_span(
            name, context=_started(context_of(traceparent, tracestate)), kind=kind,
            attributes=attributes,
        ) as current:
            yield current
    finally:
        _CAUSE.reset(token)


@contextmanager
def request_span(
    name: str, traceparent: str | None, tracestate: str | None, attributes: Attributes | None = None
) -> Iterator[Span]:
    """The server span of one HTTP command, continuing the caller's ``traceparent`` header."""
    with continued_span(name, traceparent, tracestate, attributes, SpanKind.SERVER) as current:
        yield current


def _started(ctx: otel_context.Context) -> otel_context.Context:
    """``ctx``, or when it holds no span, a context with a fresh non-recording root: a no-op
    tracer then still yields a valid span context, so results start one trace, not one each."""
    if trace.get_current_span(ctx).get_span_context().is_valid or recording():
        return ctx
    root = TraceParent.new_trace()
    return context_of(str(root))


@contextmanager
def consume_span(
    group: str, record: Any, envelope: Envelope | None, *, redrive: bool = False
) -> Iterator[Span]:
    """The span of one consumed record, current while its handler runs; ``redrive``: a parked
    record tried again (``redrive <topic>``), in the same trace as its first try."""
    if not _spans_recorded():
        parent, state = trace_of(envelope) if envelope is not None else (None, None)
        token = _CAUSE.set((parent, _normalised(state)) if parent is not None else (None, None))
        try:
            yield INVALID_SPAN
        finally:
            _CAUSE.reset(token)
        return
    attributes: dict[str, str | int | bool] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.topic,
        "messaging.consumer.group.name": group,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
        "tenant.redrive": redrive,
    }
    if envelope is not None:
        attributes.update(
            {
                "messaging.message.id": envelope.id,
                "cloudevents.event_type": envelope.type,
                "cloudevents.event_subject": envelope.subject,
                "tenant.correlation_id": envelope.correlationid,
            }
        )
    with _tracer.start_as_current_span(
        f"{'redrive' if redrive else 'process'} {record.topic}",
        context=parent_of(envelope),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span


@contextmanager
def span(name: str, attributes: Attributes | None = None) -> Iterator[Span]:
    """An internal span (the database transaction, a dump) under the current one."""
    if not _spans_recorded():  # a no-op span would carry the current context on: it is current now
        yield INVALID_SPAN
        return
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def traced(name: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Run the decorated coroutine function in a span ``name``; a result with ``bytes`` (a
    stream's stats) records them."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with span(name) as current:
                result = await fn(*args, **kwargs)
                size = getattr(result, "bytes", None)
                if isinstance(size, int):
                    current.set_attribute("stream.bytes", size)
                return result

        return run

    return decorate


def stamp(envelope: Envelope) -> Envelope:
    """``envelope`` carrying the current span's context: the span that is writing it.

    With no recording span (no tracer installed, or the trace not sampled) it continues the
    current trace, or the envelope's own, under a fresh span id, and starts a new trace when
    there is none: a reader can always follow one trace id across the hops."""
    writer = _writer(envelope)
    return envelope if writer is None else with_trace(envelope, *writer)


def writer_attributes() -> dict[str, str | None]:
    """The trace attributes of an envelope made now, with no trace of its own: what ``stamp``
    would give it, set when it is built (``codec.envelope_for(..., extensions=...)``) instead
    of on a copy. A consumer makes one result per event."""
    writer = _writer(None)
    assert writer is not None  # an envelope with no trace of its own always gets one
    return trace_attributes(*writer)


def _writer(envelope: Envelope | None) -> tuple[TraceParent, str | None] | None:
    """The trace (parent, state) an envelope written now carries; None: ``envelope``'s own."""
    cause = _CAUSE.get()
    if cause is not None:  # a consumed event's, with no tracer installed
        parent, state = cause
        if parent is not None:
            return parent.child(), state
        return None if _has_trace(envelope) else (TraceParent.new_trace(), None)
    current = trace.get_current_span()
    ctx = current.get_span_context()
    if current.is_recording() and ctx.is_valid:
        parent = TraceParent(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", f"{ctx.trace_flags:02x}")
        return parent, ctx.trace_state.to_header() or None
    if ctx.is_valid:
        base = TraceParent(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", f"{ctx.trace_flags:02x}")
        return base.child(), ctx.trace_state.to_header() or None
    return None if _has_trace(envelope) else (TraceParent.new_trace(), None)


def _has_trace(envelope: Envelope | None) -> bool:
    return envelope is not None and trace_of(envelope)[0] is not None


def _normalised(state: str | None) -> str | None:
    """A tracestate as the W3C propagator would carry it on (malformed entries dropped)."""
    if state is None:
        return None
    return TraceState.from_header([state]).to_header() or None


@contextmanager
def publish_spans(
    records: Iterable[tuple[str, bytes, Sequence[tuple[str, bytes]]]],
) -> Iterator[None]:
    """One producer span per (topic, value, headers) published together, each a child of the
    context the record carries. Nothing is parsed, nor ``records`` iterated, when no tracer is
    installed."""
    if not recording():
        yield
        return
    spans: list[Span] = []
    for topic, value, headers in records:
        try:
            envelope: Envelope | None = read_envelope(value, headers)
        except InvalidMessage:
            envelope = None
        attributes: dict[str, str | int | bool] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
        }
        if envelope is not None:
            attributes["messaging.message.id"] = envelope.id
            attributes["cloudevents.event_type"] = envelope.type
        spans.append(
            _tracer.start_span(
                f"send {topic}",
                context=parent_of(envelope),
                kind=SpanKind.PRODUCER,
                attributes=attributes,
            )
        )
    try:
        yield
    except BaseException as e:
        for s in spans:
            s.record_exception(e)
            s.set_status(Status(StatusCode.ERROR, type(e).__name__))
        raise
    finally:
        for s in spans:
            s.end()

