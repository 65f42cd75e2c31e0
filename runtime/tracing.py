"""OpenTelemetry set-up for one process: which exporter the spans go to (TENANT_OTEL_EXPORTER).

``none`` installs nothing: the API's proxy tracer stays a no-op, so a span costs a context switch
and no allocation worth the name, and the W3C trace context still travels on every event
(adapters/trace_context.py keeps it going). ``console`` writes one JSON span per line on stdout
(the worker's log); ``otlp`` sends them over OTLP/HTTP to TENANT_OTEL_ENDPOINT. Both export from
a background thread (BatchSpanProcessor), never from the event loop.
"""

import os
import sys
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

from runtime.settings import Settings

# A console reader (a person, a test) wants the spans soon; OTLP batches at the SDK's default.
_CONSOLE_DELAY_MS = 500


def configure_tracing(settings: Settings, role: str = "worker") -> Callable[[], None]:
    """Install the tracer provider TENANT_OTEL_EXPORTER asks for; returns the shutdown to call
    at exit (it flushes the spans still buffered)."""
    if settings.otel_exporter == "none":
        return lambda: None
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": settings.otel_service_name,
                "service.instance.id": f"{role}-{os.getpid()}",
            }
        )
    )
    provider.add_span_processor(_processor(settings))
    trace.set_tracer_provider(provider)
    return provider.shutdown


def _processor(settings: Settings) -> BatchSpanProcessor:
    exporter: SpanExporter
    if settings.otel_exporter == "console":
        exporter = ConsoleSpanExporter(out=sys.stdout, formatter=_json_line)
        return BatchSpanProcessor(exporter, schedule_delay_millis=_CONSOLE_DELAY_MS)
    # Imported here: only the otlp exporter needs protobuf and requests loaded.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_endpoint))


def _json_line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + "\n"
