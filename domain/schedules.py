"""Tick schedules: when windows start, which ones are due, and each tick's deterministic id. Pure.

Expressions (always UTC):

- five-field cron ``minute hour day-of-month month day-of-week``; a field is ``*``, ``n``,
  ``a-b``, a list ``a,b-c`` and any item may take a step ``/s`` (``*/15``, ``1-30/2``, ``5/10``).
  Day-of-week is 0-7 (0 and 7 are Sunday). As in cron, when both day fields are restricted a day
  matching either one is taken.
- macros ``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``, ``@yearly``
  (``@annually``);
- ``@every <n>[s|m|h|d]``: a window every n, aligned to the Unix epoch so every process computes
  the same starts. MetricsDue uses it (``TENANT_METRICS_INTERVAL``); tests use it for schedules
  shorter than cron's one minute.

A window is due at its start. Tick ids derive from (kind, subject, window start), so two
schedulers, a restart or a replay emit the same id and the consumers' inbox drops the repeat.
"""

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

TICK_NAMESPACE = uuid.UUID("3d6a0f7e-2b51-4c8e-9a37-5f1e0c2d4b69")
CatchUp = Literal["latest", "all"]
# Cron never matching (e.g. "0 0 30 2 *") would otherwise be searched for ever.
_SEARCH_DAYS = 366 * 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EVERY = re.compile(r"^@every\s+(?P<n>\d+)\s*(?P<unit>[smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


@dataclass(frozen=True)
class Every:
    seconds: int


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow


Schedule = Every | Cron


def parse_schedule(expr: str) -> Schedule:
    """Parse an expression (see the module docstring); ValueError says what is wrong."""
    text = " ".join(expr.strip().lower().split())
    text = _MACROS.get(text, text)
    every = _EVERY.fullmatch(text)
    if every:
        seconds = int(every["n"]) * _UNIT_SECONDS[every["unit"]]
        if seconds < 1:
            raise ValueError(f"{expr!r}: @every needs a positive interval")
        return Every(seconds)
    parts = text.split(" ")
    if len(parts) != 5:
        raise ValueError(f"{expr!r}: expected 5 cron fields, @every <n>[smhd] or a @macro")
    minutes, hours, days, months, weekdays = (
        _field(part, name, lo, hi) for part, (name, lo, hi) in zip(parts, _FIELDS, strict=True)
    )
    return Cron(
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(d % 7 for d in weekdays),
        days_restricted=parts[2] != "*",
        weekdays_restricted=parts[4] != "*",
    )


def _field(text: str, name: str, lo: int, hi: int) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = lo, hi
            elif "-" in base:
                start, end = (int(v) for v in base.split("-", 1))
            else:
                start = int(base)
                end = hi if step_text else start
        except ValueError:
            raise ValueError(f"{name}: {item!r} is not *, n, a-b or a list/step of them") from None
        if step < 1 or not lo <= start <= end <= hi:
            raise ValueError(f"{name}: {item!r} outside {lo}-{hi} (or a bad step)")
        values.update(range(start, end + 1, step))
    return values


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("schedule times must be timezone-aware")
    return moment.astimezone(UTC)


def windows_between(
    schedule: Schedule | str, since: datetime, until: datetime, *, limit: int | None = None
) -> list[datetime]:
    """Window starts w with ``since < w <= until``, ascending; with ``limit``, only the last ones.

    Callers facing long gaps pass a limit: the search then walks back from ``until`` and stops.
    """
    sched = parse_schedule(schedule) if isinstance(schedule, str) else schedule
    since, until = _utc(since), _utc(until)
    if until <= since or limit == 0:
        return []
    if isinstance(sched, Every):
        step = sched.seconds
        first = (int((since - _EPOCH).total_seconds()) // step + 1) * step
        last = int((until - _EPOCH).total_seconds()) // step * step
        if limit is not None:
            first = max(first, last - (limit - 1) * step)
        return [_EPOCH + timedelta(seconds=s) for s in range(first, last + 1, step)]
    found: list[datetime] = []
    day = until.date()
    while day >= since.date() and (limit is None or len(found) < limit):
        if sched.matches_day(day):
            for hour in reversed(sched.hours):
                for minute in reversed(sched.minutes):
                    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                    if since < moment <= until and (limit is None or len(found) < limit):
                        found.append(moment)
        day -= timedelta(days=1)
    return found[::-1]


def next_window(schedule: Schedule, after: datetime) -> datetime | None:
    """The first window start strictly after ``after`` (None if cron never matches)."""
    after = _utc(after)
    if isinstance(schedule, Every):
        step = schedule.seconds
        elapsed = int((after - _EPOCH).total_seconds())
        return _EPOCH + timedelta(seconds=(elapsed // step + 1) * step)
    day = after.date()
    for _ in range(_SEARCH_DAYS):
        if schedule.matches_day(day):
            for hour in schedule.hours:
                for minute in schedule.minutes:
                    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                    if moment > after:
                        return moment
        day += timedelta(days=1)
    return None


def due_windows(
    schedule: Schedule, since: datetime, now: datetime, policy: CatchUp, cap: int
) -> list[datetime]:
    """Windows to emit now, given the last one emitted (``since``, exclusive).

    ``latest``: only the newest missed window. ``all``: every missed window, but at most the
    newest ``cap`` of them (older ones are dropped: a flood of stale ticks helps nobody).
    """
    return windows_between(schedule, since, now, limit=1 if policy == "latest" else max(1, cap))


def tick_id(kind: str, subject: str, window_start: datetime) -> str:
    """The event id of the ``kind`` tick for ``subject`` (a tenant id or ``__all__``)."""
    start = _utc(window_start).replace(microsecond=0)
    return str(uuid.uuid5(TICK_NAMESPACE, f"{kind}:{subject}:{start.isoformat()}"))
