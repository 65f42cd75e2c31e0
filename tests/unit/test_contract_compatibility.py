"""Contract changes are checked against the last released schemas (contracts/released/)."""

from pathlib import Path
from typing import Any

import contracts
from contracts.compatibility import (
    breaking_changes,
    current_schemas,
    load_schemas,
    released_versions,
)

RELEASED = Path(__file__).resolve().parents[2] / "contracts" / "released"


def _schema(required: list[str], *optional: str) -> dict[str, Any]:
    return {
        "properties": {n: {"type": "string"} for n in (*required, *optional)},
        "required": required,
    }


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def test_current_models_are_compatible_with_the_last_release() -> None:
    versions = released_versions(RELEASED)
    assert versions, f"no released schemas under {RELEASED}"
    last = versions[-1]
    assert _key(last) <= _key(contracts.__version__), "a release newer than the package version"
    released = load_schemas(RELEASED / last)
    assert "envelope" in released and "TenantProvisioned" in released
    problems = breaking_changes(released, current_schemas())
    assert not problems, (
        f"breaking contract changes against {last} (make them additive, or release a new major "
        f"version): {problems}"
    )


def test_additions_are_compatible() -> None:
    released = {"E": _schema(["a"], "b")}
    current = {"E": _schema(["a"], "b", "c"), "New": _schema(["x"])}
    assert breaking_changes(released, current) == []


def test_a_field_made_optional_is_compatible() -> None:
    assert breaking_changes({"E": _schema(["a", "b"])}, {"E": _schema(["a"], "b")}) == []


def test_a_removed_field_is_breaking() -> None:
    assert breaking_changes({"E": _schema(["a"], "b")}, {"E": _schema(["a"])}) == ["E.b: removed"]


def test_a_newly_required_field_is_breaking() -> None:
    released = {"E": _schema(["a"], "b")}
    assert breaking_changes(released, {"E": _schema(["a", "b"])}) == [
        "E.b: newly required (was optional)"
    ]
    assert breaking_changes(released, {"E": _schema(["a", "c"], "b")}) == [
        "E.c: newly required (was absent)"
    ]


def test_a_removed_event_type_is_breaking() -> None:
    assert breaking_changes({"E": _schema(["a"])}, {}) == ["E: removed"]
