"""Backup rules: artifact names, retention and retry timing. Pure."""

from dataclasses import dataclass
from datetime import datetime, timedelta

ARTIFACT_SUFFIX = ".dump.zst.age"
MANIFEST_SUFFIX = ".manifest.json"


def artifact_key(tenant_id: str, backup_id: str) -> str:
    return f"{tenant_id}/{backup_id}{ARTIFACT_SUFFIX}"


def manifest_key(tenant_id: str, backup_id: str) -> str:
    return f"{tenant_id}/{backup_id}{MANIFEST_SUFFIX}"


@dataclass(frozen=True)
class RetentionPolicy:
    """Keep the newest ``last`` backups, plus the newest backup of each of the last ``daily``
    UTC days and of each of the last ``weekly`` ISO weeks."""

    last: int
    daily: int = 0
    weekly: int = 0


@dataclass(frozen=True)
class CatalogEntry:
    backup_id: str
    finished_at: datetime


def expired(entries: list[CatalogEntry], policy: RetentionPolicy, now: datetime) -> list[str]:
    """Ids of backups the policy no longer keeps (never the newest one)."""
    newest_first = sorted(entries, key=lambda e: e.finished_at, reverse=True)
    keep = {e.backup_id for e in newest_first[: max(1, policy.last)]}
    for period, count, bucket in (
        ("day", policy.daily, lambda d: d.date()),
        ("week", policy.weekly, lambda d: tuple(d.isocalendar())[:2]),
    ):
        if count <= 0:
            continue
        horizon = now - (timedelta(days=count) if period == "day" else timedelta(weeks=count))
        seen: set[object] = set()
        for entry in newest_first:
            if entry.finished_at < horizon:
                break
            key = bucket(entry.finished_at)
            if key not in seen:
                seen.add(key)
                keep.add(entry.backup_id)
    return [e.backup_id for e in newest_first if e.backup_id not in keep]


def retry_delay(attempt: int, base_s: float, max_s: float, jitter: float) -> float:
    """Exponential backoff; ``jitter`` in [0, 1) is supplied by the caller (keeps this pure)."""
    return float(min(max_s, base_s * 2 ** max(0, attempt - 1)) * (0.5 + jitter / 2))


def attempts_spent(claims: int, max_attempts: int) -> bool:
    """A job claimed more than ``max_attempts`` times has had every attempt it may have.

    Each claim counts one attempt, whether or not its holder lived to report; a holder that is
    killed (OOM, SIGKILL) reports nothing, so only the claim count bounds such a job.
    """
    return claims > max_attempts


def row_count_estimate(reltuples: float, live_tuples: int | None) -> int:
    """An estimated row count from the planner's statistics, never negative.

    ``reltuples`` is -1 for a table never vacuumed or analyzed (PostgreSQL 14+); then the
    statistics collector's live-tuple count is the best we have, else 0.
    """
    if reltuples >= 0:
        return round(reltuples)
    return max(0, live_tuples or 0)
