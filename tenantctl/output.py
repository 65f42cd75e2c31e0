"""What tenantctl prints and how it exits: data on stdout, everything else on stderr.

Scripts read stdout (JSON with ``--json``, or the result event of ``--wait``) and the exit code;
progress, notices and errors go to stderr so that ``tenantctl ... | jq`` always works.
"""

import json
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import IntEnum
from typing import Any

from rich.console import Console

# Data: tables and JSON. ``soft_wrap`` keeps long cells intact when stdout is a pipe.
out = Console(soft_wrap=True)
# Chatter: progress bars, "published ...", notices and errors.
err = Console(stderr=True)


JSON_HELP = "Print JSON on stdout instead of a table"


class ExitCode(IntEnum):
    """The exit codes of every command (the README's table is generated from ``MEANING``)."""

    DONE = 0
    FAILED = 1
    USAGE = 2
    TIMEOUT = 3
    NOT_FOUND = 4


MEANING: Mapping[ExitCode, str] = {
    ExitCode.DONE: "Done: the command did what it was asked (with `--wait`: a success result).",
    ExitCode.FAILED: "Refused or failed: a `*Failed` result, a dead-lettered request, a failed "
    "drill, a halted rollout, or a dependency that did not answer.",
    ExitCode.USAGE: "Usage: a missing or malformed argument or option (nothing was published).",
    ExitCode.TIMEOUT: "Timeout: no result within `--timeout` (the request may still complete).",
    ExitCode.NOT_FOUND: "Not found: the tenant, backup, dead letter or migration does not exist.",
}


class CliError(Exception):
    """An expected failure: printed as one line on stderr, the process exits with ``code``."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.code = code


class NotFound(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.NOT_FOUND)


class Usage(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.USAGE)


def rfc3339(value: datetime) -> str:
    """``2026-12-01T14:16:25.123456Z``: UTC with a ``Z``, like the CloudEvents ``time`` field."""
    if value.tzinfo is None:  # our timestamps are timestamptz; a naive one would be a bug upstream
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    """``value`` with every datetime as RFC 3339 (recursively), ready for json.dumps."""
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def print_json(value: Any, *, lines: bool = False) -> None:
    """Data to stdout: indented JSON, or one compact line (``lines``) flushed at once."""
    text = json.dumps(jsonable(value), indent=None if lines else 2, ensure_ascii=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def notice(message: str) -> None:
    """A line for the human at the terminal (stderr)."""
    err.print(message, style="dim", highlight=False, markup=False)


# PermanentError reasons that mean "no such thing" rather than "refused".
_NOT_FOUND_REASONS = frozenset({"unknown_tenant", "backup_not_found", "not_found"})


def describe(exc: BaseException) -> tuple[ExitCode, str]:
    """(exit code, one line) for an exception that reached the top of a command."""
    from pydantic import ValidationError

    from domain.errors import PermanentError, TransientError

    if isinstance(exc, ValidationError):  # an argument the event's contract refuses
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        return ExitCode.USAGE, f"invalid {exc.title}: {problems}"
    if isinstance(exc, CliError):
        return exc.code, str(exc)
    if isinstance(exc, PermanentError):
        code = ExitCode.NOT_FOUND if exc.reason in _NOT_FOUND_REASONS else ExitCode.FAILED
        return code, str(exc)
    if isinstance(exc, TransientError):
        return ExitCode.FAILED, f"{exc} (transient: try again)"
    if isinstance(exc, ConnectionError | TimeoutError | OSError):
        return ExitCode.FAILED, f"cannot reach a dependency: {exc or type(exc).__name__}"
    name = type(exc).__name__
    if name == "UndefinedTableError":  # a fresh stack: the workers create the control schema
        return ExitCode.FAILED, f"{exc}: start a worker once (tenantctl run all) to create it"
    if name == "UnknownTopicOrPartitionError":
        return ExitCode.FAILED, "a topic does not exist yet: start a worker once to create it"
    if name.startswith("Kafka") or type(exc).__module__.startswith("aiokafka"):
        return ExitCode.FAILED, f"Kafka: {exc or name}"
    return ExitCode.FAILED, " ".join(f"{name}: {exc}".split())  # one line, whatever it said
