"""Structured JSON logs via structlog; event, correlation and tenant ids bound per message."""

import logging
import re
import sys
from contextvars import ContextVar
from typing import Any

import structlog

# A DSN's password (scheme://user:password@host) never reaches a log line.
_DSN_PASSWORD = re.compile(r"(?P<prefix>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.IGNORECASE)


def redact(text: str) -> str:
    return _DSN_PASSWORD.sub(r"\g<prefix>***@", text)


def _redact_values(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: redact(v) if isinstance(v, str) else v for k, v in event_dict.items()}


# The event a batch is handling now (group, Kafka record, envelope), rendered into a line only
# when one is written. Binding structlog's context variables per event costs a batch more than
# most of its events' effects do, and nearly all of those events log nothing.
_EVENT: ContextVar[tuple[str, Any, Any] | None] = ContextVar("tenant_log_event", default=None)


def bind_event(group: str, record: Any, envelope: Any | None) -> None:
    """Lines logged from here on (in this context) carry the event's fields: group, topic,
    partition and offset, and once it is decoded (``envelope``) its event id and type,
    correlation and tenant ids. The one place these field names are written, for both paths."""
    _EVENT.set((group, record, envelope))


def unbind_event() -> None:
    _EVENT.set(None)


def _merge_event(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    bound = _EVENT.get()
    if bound is None:
        return event_dict
    group, record, env = bound
    fields: tuple[tuple[str, Any], ...] = (
        ("group", group), ("topic", record.topic), ("partition", record.partition),
        ("offset", record.offset),
    )
    if env is not None:
        fields += (
            ("event_id", env.id), ("event_type", env.type),
            ("correlation_id", env.correlationid), ("tenant_id", env.subject),
        )
    for key, value in fields:
        event_dict.setdefault(key, value)  # what a line sets itself wins
    return event_dict


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr, for our logs and for the libraries' stdlib logging alike."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _merge_event,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_values,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
