"""The catalogue upkeep rule: which pg_catalog tables are due a VACUUM."""

import pytest

from domain.catalog_upkeep import CatalogStats, UpkeepPolicy, catalogs_to_vacuum, is_due

POLICY = UpkeepPolicy(dead_rows=10_000, dead_fraction=0.05)


def test_a_catalogue_is_due_from_the_dead_row_count_on() -> None:
    assert not is_due(CatalogStats("pg_attribute", live=50_000, dead=9_999), POLICY)
    assert is_due(CatalogStats("pg_attribute", live=50_000, dead=10_000), POLICY)


def test_a_large_catalogue_waits_for_its_fraction_too() -> None:
    big = 1_000_000  # 5% of it is 50,000 dead rows
    assert not is_due(CatalogStats("pg_attribute", live=big, dead=49_999), POLICY)
    assert is_due(CatalogStats("pg_attribute", live=big, dead=50_000), POLICY)


def test_without_a_live_estimate_the_count_alone_decides() -> None:
    # Catalogues never vacuumed nor analysed report 0 live rows.
    assert is_due(CatalogStats("pg_depend", live=0, dead=10_000), POLICY)


def test_a_zero_fraction_leaves_the_count_alone() -> None:
    policy = UpkeepPolicy(dead_rows=10, dead_fraction=0)
    assert is_due(CatalogStats("pg_class", live=10**9, dead=10), policy)


def test_shared_catalogues_are_never_due() -> None:
    assert not is_due(CatalogStats("pg_authid", live=0, dead=10**6, shared=True), POLICY)


def test_the_due_ones_come_worst_first() -> None:
    stats = [
        CatalogStats("pg_class", live=0, dead=12_000),
        CatalogStats("pg_proc", live=0, dead=5),
        CatalogStats("pg_shdepend", live=0, dead=90_000, shared=True),
        CatalogStats("pg_attribute", live=0, dead=70_000),
        CatalogStats("pg_depend", live=0, dead=44_000),
    ]
    due = [s.name for s in catalogs_to_vacuum(stats, POLICY)]
    assert due == ["pg_attribute", "pg_depend", "pg_class"]


@pytest.mark.parametrize(("rows", "fraction"), [(0, 0.1), (10, -0.1)])
def test_a_policy_that_would_vacuum_everything_or_nothing_is_refused(
    rows: int, fraction: float
) -> None:
    with pytest.raises(ValueError, match="dead_rows"):
        UpkeepPolicy(dead_rows=rows, dead_fraction=fraction)
