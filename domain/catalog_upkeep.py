"""Which system catalogues to VACUUM now: the rule of the catalogue upkeep job.

Every tenant's schema, role, tables and policies are rows in the database's catalogues
(``pg_attribute``, ``pg_depend``, ``pg_class``...); creating and dropping them leaves dead rows
that autovacuum reaches late (its default waits for a fifth of the table), and every later DDL
statement walks past them. A catalogue is due when its dead rows are at least ``dead_rows`` AND
at least ``dead_fraction`` of its live rows: the count keeps small catalogues from being
vacuumed for a handful of rows, the fraction keeps a large one from being vacuumed over and
over for little gain. The live count is the statistics' estimate: 0 until the catalogue was
first vacuumed or analysed, so then the count alone decides.

Shared catalogues (``pg_authid``, ``pg_database``...: one copy for the whole cluster) are never
due: only a superuser may vacuum them, and they are not what tenant churn bloats.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogStats:
    """One ``pg_catalog`` table as its statistics see it."""

    name: str
    live: int
    dead: int
    shared: bool = False


@dataclass(frozen=True)
class UpkeepPolicy:
    """``dead_rows`` (≥ 1) and ``dead_fraction`` (≥ 0; 0 = the count alone) must both be met."""

    dead_rows: int
    dead_fraction: float

    def __post_init__(self) -> None:
        if self.dead_rows < 1 or self.dead_fraction < 0:
            raise ValueError("dead_rows must be >= 1 and dead_fraction >= 0")


def is_due(stats: CatalogStats, policy: UpkeepPolicy) -> bool:
    """Whether this catalogue needs a VACUUM now."""
    if stats.shared:
        return False
    return stats.dead >= policy.dead_rows and stats.dead >= policy.dead_fraction * stats.live


def catalogs_to_vacuum(stats: list[CatalogStats], policy: UpkeepPolicy) -> list[CatalogStats]:
    """The due catalogues, most dead rows first (the worst is done first if a pass is cut short)."""
    due = [s for s in stats if is_due(s, policy)]
    return sorted(due, key=lambda s: (-s.dead, s.name))
