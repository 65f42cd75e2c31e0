"""Versioned migrations: naming rule and the plan from one version to another."""

import re
from dataclasses import dataclass

_FILENAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, order=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class MigrationPlan:
    current: int
    target: int
    steps: tuple[Migration, ...]

    @property
    def is_noop(self) -> bool:
        return not self.steps


def parse_migration_filename(filename: str) -> tuple[int, str]:
    """``0002_add_invoices.sql`` -> (2, "add_invoices"); anything else is a packaging error."""
    match = _FILENAME.fullmatch(filename)
    if match is None:
        raise ValueError(f"migration file name must look like 0001_name.sql, got {filename!r}")
    return int(match["version"]), match["name"]


def plan_migrations(
    available: list[Migration], current: int, target: int | None = None
) -> MigrationPlan:
    """Steps to bring a schema from ``current`` to ``target`` (default: the latest).

    Versions must be 1..N without gaps, so a missing file is caught before any tenant is touched.
    """
    ordered = sorted(available)
    versions = [m.version for m in ordered]
    if versions != list(range(1, len(ordered) + 1)):
        raise ValueError(f"migration versions must be contiguous from 1, got {versions}")
    latest = len(ordered)
    goal = latest if target is None else target
    if not 0 <= goal <= latest:
        raise ValueError(f"target version {goal} outside 0..{latest}")
    if goal < current:
        raise ValueError(f"downgrade from {current} to {goal} is not supported")
    return MigrationPlan(current, goal, tuple(m for m in ordered if current < m.version <= goal))


def rollout_id_for(goal: int, nonce: str) -> str:
    """A rollout's id: the version it goes to, readable at a glance, and the first 8 characters
    of ``nonce`` (fresh for each rollout, e.g. a uuid4's hex) to tell apart two to one version."""
    return f"to{goal}-{nonce[:8]}"
