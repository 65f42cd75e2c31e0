"""Backup rules: deterministic ids and names, retention (last N, dailies, weeklies), backoff."""

from datetime import UTC, datetime, timedelta

from domain.backups import (
    CatalogEntry,
    RetentionPolicy,
    artifact_key,
    expired,
    manifest_key,
    retry_delay,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _hourly(n: int, start: datetime = NOW) -> list[CatalogEntry]:
    """n backups, one per hour back from ``start``; b0 is the newest."""
    return [CatalogEntry(f"b{i}", start - timedelta(hours=i)) for i in range(n)]


def test_artifact_and_manifest_live_side_by_side_under_the_tenant() -> None:
    assert artifact_key("acme", "b-1") == "acme/b-1.dump.zst.age"
    assert manifest_key("acme", "b-1") == "acme/b-1.manifest.json"


def test_keep_last_n_expires_the_older_ones_newest_first() -> None:
    assert expired(_hourly(5), RetentionPolicy(last=2), NOW) == ["b2", "b3", "b4"]


def test_input_order_does_not_matter() -> None:
    entries = list(reversed(_hourly(4)))
    assert expired(entries, RetentionPolicy(last=1), NOW) == ["b1", "b2", "b3"]


def test_the_newest_is_never_expired_even_with_last_zero() -> None:
    assert expired(_hourly(3), RetentionPolicy(last=0), NOW) == ["b1", "b2"]
    assert expired([], RetentionPolicy(last=0), NOW) == []


def test_dailies_keep_the_newest_backup_of_each_recent_day() -> None:
    # Four per day over five days, at 11:00, 10:00, 09:00, 08:00.
    entries = [CatalogEntry(f"d{d}h{h}", NOW - timedelta(days=d, hours=1 + h))
               for d in range(5) for h in range(4)]
    gone = expired(entries, RetentionPolicy(last=1, daily=3), NOW)
    kept = {e.backup_id for e in entries} - set(gone)
    # The newest overall, plus the newest of each day within the 3-day horizon.
    assert kept == {"d0h0", "d1h0", "d2h0"}


def test_weeklies_keep_the_newest_backup_of_each_recent_iso_week() -> None:
    entries = [CatalogEntry(f"w{w}d{d}", NOW - timedelta(weeks=w, days=d))
               for w in range(4) for d in range(0, 7, 3)]
    gone = expired(entries, RetentionPolicy(last=1, weekly=2), NOW)
    kept = {e.backup_id for e in entries} - set(gone)
    horizon = NOW - timedelta(weeks=2)
    newest_per_week: dict[tuple[int, int], CatalogEntry] = {}
    for e in sorted(entries, key=lambda e: e.finished_at, reverse=True):
        if e.finished_at >= horizon:
            newest_per_week.setdefault(tuple(e.finished_at.isocalendar())[:2], e)  # type: ignore[arg-type]
    assert kept == {"w0d0"} | {e.backup_id for e in newest_per_week.values()}
    assert "w3d6" in gone


def test_retry_delay_grows_exponentially_caps_and_applies_jitter() -> None:
    assert retry_delay(1, 2.0, 300.0, jitter=0.0) == 1.0
    assert retry_delay(3, 2.0, 300.0, jitter=0.999999) < 8.0
    assert retry_delay(3, 2.0, 300.0, jitter=0.0) == 4.0
    assert retry_delay(30, 2.0, 300.0, jitter=0.0) == 150.0
