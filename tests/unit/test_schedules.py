"""domain.schedules: cron/@every parsing, windows, catch-up and tick ids. No services."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.schedules import (
    Cron,
    Every,
    due_windows,
    next_window,
    parse_schedule,
    tick_id,
    windows_between,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "minutes", "hours"),
    [
        ("0 2 * * *", (0,), (2,)),
        ("*/15 * * * *", (0, 15, 30, 45), tuple(range(24))),
        ("5,10-12 1-5/2 * * *", (5, 10, 11, 12), (1, 3, 5)),
        ("30/10 0 * * *", (30, 40, 50), (0,)),
        ("@hourly", (0,), tuple(range(24))),
        ("  0   2 * *  * ", (0,), (2,)),
    ],
)
def test_cron_fields(expr: str, minutes: tuple[int, ...], hours: tuple[int, ...]) -> None:
    schedule = parse_schedule(expr)
    assert isinstance(schedule, Cron)
    assert schedule.minutes == minutes
    assert schedule.hours == hours


@pytest.mark.parametrize(
    ("expr", "seconds"),
    [("@every 5s", 5), ("@every 5", 5), ("@every 2m", 120), ("@every 1d", 86400)],
)
def test_every(expr: str, seconds: int) -> None:
    assert parse_schedule(expr) == Every(seconds)


@pytest.mark.parametrize(
    "expr",
    ["", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
     "*/0 * * * *", "a * * * *", "5-1 * * * *", "@every 0s", "@every 5x", "@sometimes"],
)
def test_invalid_expressions_are_refused(expr: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(expr)


def test_daily_windows_between() -> None:
    got = windows_between("0 2 * * *", at("2024-03-01T02:00:00"), at("2024-03-04T01:59:00"))
    # since is exclusive, until inclusive
    assert got == [at("2024-03-02T02:00:00"), at("2024-03-03T02:00:00")]
    assert windows_between("0 2 * * *", at("2024-03-01T00:00:00"), at("2024-03-01T02:00:00")) == [
        at("2024-03-01T02:00:00")
    ]


def test_limit_keeps_the_newest_windows() -> None:
    since, until = at("2024-01-01T00:00:00"), at("2024-01-01T01:00:00")
    assert windows_between("*/10 * * * *", since, until, limit=2) == [
        at("2024-01-01T00:50:00"), at("2024-01-01T01:00:00")
    ]
    assert windows_between("@every 600s", since, until, limit=2) == [
        at("2024-01-01T00:50:00"), at("2024-01-01T01:00:00")
    ]
    assert windows_between("@every 600s", since, until) == [
        at("2024-01-01T00:10:00") + timedelta(minutes=10 * i) for i in range(6)
    ]


def test_every_is_aligned_to_the_epoch() -> None:
    got = windows_between("@every 300s", at("2024-01-01T00:01:07"), at("2024-01-01T00:11:00"))
    assert got == [at("2024-01-01T00:05:00"), at("2024-01-01T00:10:00")]


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # 2024-06-01 is a Saturday; "1st of the month OR Monday"
    got = windows_between("0 0 1 * 1", at("2024-05-31T00:00:00"), at("2024-06-11T00:00:00"))
    assert got == [at("2024-06-01T00:00:00"), at("2024-06-03T00:00:00"), at("2024-06-10T00:00:00")]
    sundays = windows_between("0 0 * * 7", at("2024-06-01T00:00:00"), at("2024-06-10T00:00:00"))
    assert sundays == [at("2024-06-02T00:00:00"), at("2024-06-09T00:00:00")]


def test_next_window() -> None:
    assert next_window(parse_schedule("0 2 * * *"), at("2024-03-01T02:00:00")) == at(
        "2024-03-02T02:00:00"
    )
    assert next_window(Every(5), at("2024-03-01T00:00:04")) == at("2024-03-01T00:00:05")
    assert next_window(parse_schedule("0 0 30 2 *"), at("2024-01-01T00:00:00")) is None


def test_catch_up_latest_or_all_capped() -> None:
    daily = parse_schedule("0 2 * * *")
    since, now = at("2024-03-01T02:00:00"), at("2024-03-11T03:00:00")
    assert due_windows(daily, since, now, "latest", 5) == [at("2024-03-11T02:00:00")]
    assert due_windows(daily, since, now, "all", 3) == [
        at("2024-03-09T02:00:00"), at("2024-03-10T02:00:00"), at("2024-03-11T02:00:00")
    ]
    assert len(due_windows(daily, since, now, "all", 100)) == 10
    assert due_windows(daily, at("2024-03-11T02:00:00"), now, "all", 100) == []


def test_long_gaps_with_a_limit_stay_cheap() -> None:
    minutely = parse_schedule("* * * * *")
    got = due_windows(minutely, at("2000-01-01T00:00:00"), at("2024-01-01T00:00:30"), "all", 2)
    assert got == [at("2023-12-31T23:59:00"), at("2024-01-01T00:00:00")]


def test_tick_ids_are_deterministic_and_distinct() -> None:
    window = at("2024-03-01T02:00:00")
    same = tick_id("BackupDue", "acme", window.astimezone(UTC))
    assert same == tick_id("BackupDue", "acme", window)
    assert same == tick_id("BackupDue", "acme", window.astimezone(timezone(timedelta(hours=2))))
    others = {
        tick_id("BackupDue", "acme", window + timedelta(days=1)),
        tick_id("BackupDue", "other", window),
        tick_id("MetricsDue", "acme", window),
    }
    assert same not in others and len(others) == 3


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        windows_between("@every 5s", datetime(2024, 1, 1), datetime(2024, 1, 2))

