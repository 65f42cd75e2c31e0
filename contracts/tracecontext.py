"""The CloudEvents distributed-tracing extension: a W3C ``traceparent`` (and ``tracestate``) on
the envelope, so one trace follows a request through every hop.

Pure wire helpers, no OpenTelemetry: a consumer in another team reads the same two attributes.
``traceparent`` is ``00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>``; an invalid
one is ignored (the spec says a receiver restarts the trace), never a reason to dead-letter.
"""

import re
import secrets
from dataclasses import dataclass

from contracts.envelope import Envelope

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_FORMAT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# W3C trace-context: at most 32 list members, 512 characters is what a receiver must keep.
_TRACESTATE_MAX = 512


@dataclass(frozen=True)
class TraceParent:
    """One W3C ``traceparent``: which trace, which span is the parent, sampled or not."""

    trace_id: str
    span_id: str
    flags: str = "01"

    @classmethod
    def parse(cls, text: object) -> "TraceParent | None":
        """The parsed header, or None when absent or not a valid version-00 (or later) value."""
        if not isinstance(text, str):
            return None
        match = _FORMAT.fullmatch(text.strip())
        if match is None:
            return None
        version, trace_id, span_id, flags = match.groups()
        if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        return cls(trace_id, span_id, flags)

    @classmethod
    def new_trace(cls) -> "TraceParent":
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    def child(self) -> "TraceParent":
        """The same trace and flags, with a fresh span id (a hop that records no span itself)."""
        return TraceParent(self.trace_id, secrets.token_hex(8), self.flags)

    def __str__(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def trace_of(envelope: Envelope) -> tuple[TraceParent | None, str | None]:
    """The envelope's ``traceparent`` (None when absent or invalid) and its ``tracestate``."""
    extensions = envelope.model_extra or {}  # read, not copied (``extensions`` copies)
    parent = TraceParent.parse(extensions.get(TRACEPARENT))
    state = extensions.get(TRACESTATE)
    if parent is None or not isinstance(state, str) or not state.strip():
        return parent, None
    return parent, state.strip()[:_TRACESTATE_MAX]


def trace_attributes(parent: TraceParent, state: str | None = None) -> dict[str, str | None]:
    """The envelope attributes carrying ``parent`` (and ``state``, or no tracestate); a None
    attribute is left out on the wire."""
    return {TRACEPARENT: str(parent), TRACESTATE: state[:_TRACESTATE_MAX] if state else None}


def with_trace(envelope: Envelope, parent: TraceParent, state: str | None = None) -> Envelope:
    """A copy of ``envelope`` carrying ``parent`` (and ``state``, or no tracestate)."""
    # No re-validation: both values are well-formed by construction, and a metrics tick stamps
    # thousands of results in one go.
    return envelope.model_copy(update=trace_attributes(parent, state))
