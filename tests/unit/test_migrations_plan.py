"""Migration file naming and plans between versions; the shipped template must plan cleanly."""

import pytest

from adapters.migration_files import load_migrations, required_extensions
from domain.migrations import (
    Migration,
    parse_migration_filename,
    plan_migrations,
    rollout_id_for,
)
from migrations import CONTROL_DIR, TENANT_DIR


def _migrations(*versions: int) -> list[Migration]:
    return [Migration(v, f"m{v}", f"-- {v}") for v in versions]


@pytest.mark.parametrize(
    ("filename", "parsed"),
    [("0001_init.sql", (1, "init")), ("0002_add_invoices.sql", (2, "add_invoices")),
     ("0010_v2_index.sql", (10, "v2_index"))],
)
def test_valid_filenames(filename: str, parsed: tuple[int, str]) -> None:
    assert parse_migration_filename(filename) == parsed


@pytest.mark.parametrize(
    "filename",
    ["1_init.sql", "00001_init.sql", "0001-init.sql", "0001_Init.sql", "0001_init.SQL",
     "0001_init.sql.bak", "0001_.sql", "0001_in it.sql", "init.sql", "0001_init"],
)
def test_invalid_filenames(filename: str) -> None:
    with pytest.raises(ValueError, match="0001_name.sql"):
        parse_migration_filename(filename)


def test_full_plan_is_ordered_whatever_the_input_order() -> None:
    plan = plan_migrations(_migrations(3, 1, 2), current=0)
    assert (plan.current, plan.target) == (0, 3)
    assert [m.version for m in plan.steps] == [1, 2, 3]
    assert not plan.is_noop


def test_partial_plan_to_a_target() -> None:
    plan = plan_migrations(_migrations(1, 2, 3), current=1, target=2)
    assert [m.version for m in plan.steps] == [2]


def test_up_to_date_is_noop() -> None:
    plan = plan_migrations(_migrations(1, 2), current=2)
    assert plan.is_noop and plan.steps == () and plan.target == 2


def test_no_migrations_at_version_zero_is_noop() -> None:
    assert plan_migrations([], current=0).is_noop


@pytest.mark.parametrize("versions", [(1, 3), (2, 3), (1, 1), (0, 1)])
def test_gaps_and_duplicates_are_refused(versions: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="contiguous"):
        plan_migrations(_migrations(*versions), current=0)


def test_downgrade_is_refused() -> None:
    with pytest.raises(ValueError, match="downgrade"):
        plan_migrations(_migrations(1, 2, 3), current=3, target=1)


@pytest.mark.parametrize("target", [-1, 4])
def test_target_outside_available_versions_is_refused(target: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        plan_migrations(_migrations(1, 2, 3), current=0, target=target)


def test_shipped_tenant_template_plans_from_zero() -> None:
    template = load_migrations(TENANT_DIR)
    plan = plan_migrations(template, current=0)
    assert [m.version for m in plan.steps] == list(range(1, len(template) + 1))
    assert "citext" in required_extensions(template)


def test_shipped_control_migrations_are_contiguous() -> None:
    assert not plan_migrations(load_migrations(CONTROL_DIR), current=0).is_noop


def test_a_rollout_id_names_its_version_and_eight_characters_of_its_nonce() -> None:
    assert rollout_id_for(7, "0123456789abcdef") == "to7-01234567"
    assert rollout_id_for(7, "0123456789abcdef") != rollout_id_for(7, "fedcba9876543210")
