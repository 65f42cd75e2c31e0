"""Settings of the scheduler, the metrics collection and quotas (``Settings`` inherits them).

Per-plan values are given as JSON (``{"free": "0 2 * * *"}``) or as ``plan=value`` items
separated by ``;`` (cron expressions contain commas and spaces).
"""

import json
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

from domain.schedules import parse_schedule

_DAILY_2AM = "0 2 * * *"


def _per_plan(value: object) -> object:
    if not isinstance(value, str):
        return value
    if value.strip().startswith("{"):
        return json.loads(value)
    parsed: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in value.split(";"))):
        plan, sep, spec = item.partition("=")
        if not sep:
            raise ValueError(f"expected plan=value, got {item!r}")
        parsed[plan.strip()] = spec.strip()
    return parsed


class SchedulingSettings(BaseSettings):
    # Scheduler producer
    metrics_interval: int = Field(default=300, ge=5)  # TENANT_METRICS_INTERVAL, seconds
    backup_schedules: Annotated[dict[str, str], NoDecode] = {
        "free": _DAILY_2AM,
        "pro": _DAILY_2AM,
        "enterprise": _DAILY_2AM,
    }
    backup_default_schedule: str = _DAILY_2AM  # for plans missing from backup_schedules
    scheduler_catch_up: Literal["latest", "all"] = "latest"
    scheduler_catch_up_max: int = Field(default=24, ge=1, le=10_000)
    scheduler_lock_id: int = 7_311_010
    # Standby lock polling; a dead leader's process is replaced within this (plus one round).
    # A vanished host is noticed first, within TENANT_LEADER_SESSION_TIMEOUT_S.
    scheduler_poll_s: float = Field(default=1.0, gt=0, le=60)
    scheduler_batch_size: int = Field(default=500, ge=1, le=10_000)

    # Metrics collection (consumer group tenant-metrics)
    metrics_redis_ttl_s: int = Field(default=3600, ge=1)
    metrics_redis_scan_count: int = Field(default=1000, ge=10)  # COUNT hint per SCAN call
    metrics_redis_max_keys: int = Field(default=1_000_000, ge=1)  # keys examined per tick
    metrics_redis_sample_keys: int = Field(default=100, ge=1)  # MEMORY USAGE calls per tenant
    metrics_history_length: int = Field(default=288, ge=1, le=100_000)  # ticks kept
    # Per-plan limits; a plan without an entry has no limit of that kind.
    quota_size_bytes: Annotated[dict[str, int], NoDecode] = {
        "free": 1 << 30,
        "pro": 50 << 30,
        "enterprise": 1 << 40,
    }
    quota_connections: Annotated[dict[str, int], NoDecode] = {
        "free": 5,
        "pro": 50,
        "enterprise": 500,
    }
    # Backup freshness for Prometheus: the RPO and how often every metrics worker recomputes it.
    backup_rpo_s: float = Field(default=26 * 3600, gt=0)
    backup_freshness_interval_s: float = Field(default=60.0, gt=0)

    @field_validator("backup_schedules", mode="before")
    @classmethod
    def _parse_per_plan(cls, value: object) -> object:
        return _per_plan(value)

    @field_validator("quota_size_bytes", "quota_connections", mode="before")
    @classmethod
    def _parse_limits(cls, value: object) -> object:
        parsed = _per_plan(value)
        if not isinstance(parsed, dict):
            return parsed
        try:
            limits = {str(plan): int(limit) for plan, limit in parsed.items()}
        except (TypeError, ValueError):
            raise ValueError("limits must be integers per plan") from None
        if any(limit < 0 for limit in limits.values()):
            raise ValueError("limits must not be negative")
        return limits

    @field_validator("backup_schedules")
    @classmethod
    def _schedules_parse(cls, value: dict[str, str]) -> dict[str, str]:
        for plan, expr in value.items():
            try:
                parse_schedule(expr)
            except ValueError as e:
                raise ValueError(f"plan {plan}: {e}") from None
        return value

    @field_validator("backup_default_schedule")
    @classmethod
    def _default_parses(cls, value: str) -> str:
        parse_schedule(value)
        return value

    def backup_schedule_for(self, plan: str) -> str:
        return self.backup_schedules.get(plan, self.backup_default_schedule)
