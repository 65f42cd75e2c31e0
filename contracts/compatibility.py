"""Is the current contract compatible with the last released one?

Compares JSON Schemas (as contracts/schemas/ holds them) event by event. Breaking, for the
other side of the wire: an event type that disappears, a field that disappears (its readers
lose it; with ``extra="forbid"`` its writers are refused), and a field that becomes required
(old writers omit it). Adding an event type or an optional field is not breaking.
"""

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Schema = Mapping[str, Any]
_VERSION_DIR = re.compile(r"^\d+\.\d+\.\d+$")


def breaking_changes(released: Mapping[str, Schema], current: Mapping[str, Schema]) -> list[str]:
    """Every breaking change from ``released`` to ``current`` (both: schema name -> schema)."""
    problems: list[str] = []
    for name, old in sorted(released.items()):
        new = current.get(name)
        if new is None:
            problems.append(f"{name}: removed")
            continue
        old_fields = set(old.get("properties", {}))
        new_fields = set(new.get("properties", {}))
        old_required = set(old.get("required", ()))
        for field in sorted(old_fields - new_fields):
            problems.append(f"{name}.{field}: removed")
        for field in sorted(set(new.get("required", ())) - old_required):
            was = "optional" if field in old_fields else "absent"
            problems.append(f"{name}.{field}: newly required (was {was})")
    return problems


def current_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every event's ``data`` and of the envelope, from the models."""
    from contracts.envelope import Envelope
    from contracts.events import EVENT_TYPES

    schemas = {name: model.model_json_schema() for name, model in EVENT_TYPES.items()}
    schemas["envelope"] = Envelope.model_json_schema()
    return schemas


def released_versions(released_dir: Path) -> list[str]:
    """The released versions kept under ``released_dir`` (one folder each), oldest first."""
    found = [p.name for p in released_dir.iterdir() if p.is_dir() and _VERSION_DIR.match(p.name)]
    return sorted(found, key=lambda v: tuple(int(part) for part in v.split(".")))


def load_schemas(folder: Path) -> dict[str, dict[str, Any]]:
    """``<name>.json`` files of ``folder`` as schema name -> schema."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
