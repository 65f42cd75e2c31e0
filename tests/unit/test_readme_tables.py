"""The README tables derived from code: every setting and event is described, and the settings
table is current and shows defaults that the variables accept."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from lib.readme_tables import (  # noqa: E402
    EVENTS,
    README_FILE,
    SETTINGS,
    _default,
    _default_separator,
    settings_table,
)

from contracts.events import EVENT_TYPES  # noqa: E402
from runtime.settings import ENV_PREFIX, Settings  # noqa: E402

DSN = "postgresql://svc:hunter2@127.0.0.1:5432/tenants"


def test_every_setting_has_a_description() -> None:
    missing = [
        name
        for name, field in Settings.model_fields.items()
        if not (field.description or SETTINGS.get(name, "").strip())
    ]
    assert not missing, f"describe these settings in scripts/lib/readme_tables.py: {missing}"
    assert "(not described yet)" not in settings_table()


def test_every_event_type_has_a_producer_and_a_meaning() -> None:
    missing = [
        name for name in EVENT_TYPES if not all(part.strip() for part in EVENTS.get(name, ("", "")))
    ]
    assert not missing, f"describe these events in scripts/lib/readme_tables.py: {missing}"


def test_every_description_names_an_existing_setting() -> None:
    stale = sorted(set(SETTINGS) - set(Settings.model_fields))
    assert not stale, f"descriptions of settings that no longer exist: {stale}"


def test_the_readme_settings_table_is_current() -> None:
    assert settings_table() in README_FILE.read_text(), (
        "run .venv/bin/python scripts/export_contracts.py"
    )


@pytest.mark.parametrize(
    "name", [n for n, f in Settings.model_fields.items() if isinstance(f.default, dict)]
)
def test_a_per_plan_default_as_shown_is_accepted_back(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An operator copying the Default column must get the default, not a start-up error."""
    monkeypatch.chdir(tmp_path)  # no .env
    for variable in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(variable)
    field = Settings.model_fields[name]
    shown = _default(field, _default_separator(name)).strip("`")
    monkeypatch.setenv("TENANT_PG_DSN", DSN)
    monkeypatch.setenv(f"{ENV_PREFIX}{name.upper()}", shown)
    assert getattr(Settings(), name) == field.default
