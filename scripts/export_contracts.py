"""Generate the committed artefacts derived from code (contracts/ and runtime/settings.py).

    .venv/bin/python scripts/export_contracts.py           # rewrite the files
    .venv/bin/python scripts/export_contracts.py --check   # exit 1 if a committed file is stale
    .venv/bin/python scripts/export_contracts.py --release # also keep contracts/released/<version>/

Writes contracts/schemas/<EventType>.json (JSON Schema of each event's ``data``),
contracts/schemas/envelope.json (the CloudEvents envelope) and docs/asyncapi.yaml (AsyncAPI 3.0,
built by FastStream from a broker that declares every topic, consumer group and message; no
connection is made), docs/openapi.json (OpenAPI 3.1 of the HTTP API, from its FastAPI app), and
the README's event catalogue, settings table, tenantctl command table and exit codes (between their
``<!-- BEGIN GENERATED: ... -->`` markers). The YAML is written by a tiny emitter below so that no
YAML library is needed and the output is byte-for-byte stable.
"""

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from faststream import FastStream  # noqa: E402
from faststream.kafka import KafkaBroker  # noqa: E402
from faststream.specification import AsyncAPI  # noqa: E402
from pydantic import BaseModel, create_model  # noqa: E402

from adapters.kafka import dead_letters  # noqa: E402
from contracts import __version__ as contracts_version  # noqa: E402
from contracts import topics  # noqa: E402
from contracts.envelope import Envelope  # noqa: E402
from contracts.events import (  # noqa: E402
    ALL_TENANTS,
    CONTRACT_VERSION,
    EVENT_TYPES,
    INPUTS,
    RESULTS,
    Event,
)
from runtime.settings import Settings  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from lib.readme_tables import (  # noqa: E402
    README_FILE,
    cli_table,
    event_catalogue,
    exit_codes_table,
    replace_section,
    settings_table,
)

SCHEMAS_DIR = ROOT / "contracts" / "schemas"
ASYNCAPI_FILE = ROOT / "docs" / "asyncapi.yaml"
OPENAPI_FILE = ROOT / "docs" / "openapi.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Which consumer group reads each input topic, and what it does today.
CONSUMERS: dict[str, tuple[str, str]] = {
    topics.LIFECYCLE: (
        topics.PROVISIONER_GROUP,
        "Tenant lifecycle requests, keyed by tenant id, so one tenant's requests are handled in "
        "order. Each is handled in one PostgreSQL transaction with its inbox and outbox rows. A "
        "type this build has no handler for is dead-lettered with x-dlq-reason=not_handled.",
    ),
    topics.BACKUPS: (
        topics.BACKUP_GROUP,
        "Backup and restore requests, keyed by tenant id.",
    ),
    topics.METRICS: (
        topics.METRICS_GROUP,
        f"Metrics ticks, keyed by '{ALL_TENANTS}'.",
    ),
}


# The schemas of each released client package, checked against by tests/unit (compatibility).
RELEASED_DIR = ROOT / "contracts" / "released"


def envelope_of(model: type[Event]) -> type[BaseModel]:
    """The envelope with ``type`` and ``data`` narrowed to one event, for documentation only."""
    name = model.__name__
    type_literal: Any = Literal[name]  # a Literal built at run time, one per event
    return create_model(
        f"{name}Envelope",
        __base__=Envelope,
        __doc__=f"CloudEvents envelope carrying {name} (topic {model.topic}, key = subject).",
        type=(type_literal, ...),
        data=(model, ...),
    )


def json_schemas() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for name, model in EVENT_TYPES.items():
        schema = {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": f"urn:tenant-service:contracts:v{CONTRACT_VERSION}:{name}",
            "x-topic": model.topic,
            "x-contract-version": CONTRACT_VERSION,
            **model.model_json_schema(),
        }
        files[SCHEMAS_DIR / f"{name}.json"] = _json(schema)
    envelope = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:tenant-service:contracts:v{CONTRACT_VERSION}:envelope",
        "x-contract-version": CONTRACT_VERSION,
        **Envelope.model_json_schema(),
    }
    files[SCHEMAS_DIR / "envelope.json"] = _json(envelope)
    return files


def build_app() -> FastStream:
    """A FastStream app that declares the wire (never started)."""
    broker = KafkaBroker(Settings.model_fields["kafka_bootstrap"].default)
    for topic, (group, description) in CONSUMERS.items():
        subscriber = broker.subscriber(
            topic, group_id=group, title=f"{topic}:{group}", description=description
        )
        for model in (m for m in INPUTS if m.topic == topic):
            _document_handler(subscriber, model)
    for result in RESULTS:
        broker.publisher(
            topics.EVENTS,
            title=f"{topics.EVENTS}:{result.__name__}",
            description=f"Result {result.__name__}, published by the outbox relay, keyed by "
            f"tenant id; causationid = the id of the input event that caused it.",
            schema=envelope_of(result),
        )
    broker.publisher(
        topics.DLQ,
        title=f"{topics.DLQ}:DeadLetter",
        description="A record no consumer could act on: original key, value and headers unchanged, "
        f"plus headers {dead_letters.REASON}, {dead_letters.DETAIL}, "
        f"{dead_letters.SOURCE_TOPIC}, {dead_letters.SOURCE_PARTITION}, "
        f"{dead_letters.SOURCE_OFFSET} and {dead_letters.GROUP}.",
        schema=bytes,
    )
    return FastStream(
        broker,
        specification=AsyncAPI(
            title="Tenant Service",
            version=f"{CONTRACT_VERSION}.0.0",
            description="Kafka -> PostgreSQL schema-per-tenant provisioning. Every message is a "
            "CloudEvents 1.0 structured-mode JSON event; the Kafka key and the CloudEvents "
            "subject are the tenant id. Generated by scripts/export_contracts.py: do not edit.",
        ),
    )


def _document_handler(subscriber: Any, model: type[Event]) -> None:
    body_type = envelope_of(model)
    name = model.__name__

    async def handler(body: body_type) -> None:  # type: ignore[valid-type]
        """Documentation stub: the real consumers decode raw bytes (consumers/delivery.py)."""

    def is_this_type(msg: Any) -> bool:
        return bool(msg.headers.get("ce_type") == name)

    handler.__name__ = handler.__qualname__ = name
    subscriber(filter=is_this_type)(handler)


def asyncapi() -> dict[Path, str]:
    spec = _canonical(build_app().schema.to_specification().to_jsonable())
    header = "# Generated by scripts/export_contracts.py from contracts/ -- do not edit by hand.\n"
    return {ASYNCAPI_FILE: header + to_yaml(spec)}


def _canonical(spec: dict[str, Any]) -> dict[str, Any]:
    """Stable order (FastStream keeps subscribers in hash order) and our correlation id location."""
    for section in ("channels", "operations"):
        spec[section] = dict(sorted(spec[section].items()))
    components = spec["components"]
    for section in ("messages", "schemas"):
        components[section] = dict(sorted(components[section].items()))
    for name, message in components["messages"].items():
        # FastStream's default points at its own header; ours is the CloudEvents extension in the
        # body, and a dead letter keeps the original record's ce_correlationid header (if any).
        location = (
            "$message.header#/ce_correlationid"
            if name.startswith(topics.DLQ)
            else "$message.payload#/correlationid"
        )
        message["correlationId"] = {"location": location}
    return spec


# ---- a minimal, deterministic YAML emitter (block style; every string double-quoted) ----------

_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$.\-/]*$")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def to_yaml(value: Any, indent: int = 0) -> str:
    return "".join(_lines(value, indent))


def _key(key: str) -> str:
    plain = _PLAIN_KEY.match(key) and key.lower() not in _RESERVED
    return key if plain else json.dumps(key)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


def _lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                out.append(f"{pad}{_key(str(k))}:\n")
                out.extend(_lines(v, indent + 1))
            else:
                out.append(f"{pad}{_key(str(k))}: {_empty_or_scalar(v)}\n")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                nested = _lines(item, indent + 1)
                out.append(f"{pad}- {nested[0].lstrip()}")
                out.extend(nested[1:])
            else:
                out.append(f"{pad}- {_empty_or_scalar(item)}\n")
    else:
        out.append(f"{pad}{_scalar(value)}\n")
    return out


def _empty_or_scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


# ---- main -----------------------------------------------------------------------------------


def openapi() -> dict[Path, str]:
    """The HTTP API's OpenAPI 3.1 document, from the app's routes and models (no I/O)."""
    from api.app import create_app

    return {OPENAPI_FILE: _json(create_app(None).openapi())}


def generate() -> dict[Path, str]:
    readme = README_FILE.read_text()
    readme = replace_section(readme, "event-catalogue", event_catalogue())
    readme = replace_section(readme, "settings", settings_table())
    readme = replace_section(readme, "cli", cli_table())
    readme = replace_section(readme, "exit-codes", exit_codes_table())
    return {**json_schemas(), **asyncapi(), **openapi(), README_FILE: readme}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale or missing"
    )
    parser.add_argument(
        "--release",
        action="store_true",
        help=f"also copy the schemas to contracts/released/{contracts_version}/ (a release)",
    )
    args = parser.parse_args(argv)
    files = generate()
    if args.release and not args.check:
        # The released copy is what later versions must stay compatible with.
        files.update(
            {
                RELEASED_DIR / contracts_version / p.name: text
                for p, text in files.items()
                if p.parent == SCHEMAS_DIR
            }
        )
    stale_schemas = sorted(
        p for p in SCHEMAS_DIR.glob("*.json") if p not in files
    )  # an event that was removed from contracts/
    changed = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    if args.check:
        for path in [*changed, *stale_schemas]:
            print(f"stale: {path.relative_to(ROOT)}", file=sys.stderr)
        if changed or stale_schemas:
            print("run: .venv/bin/python scripts/export_contracts.py", file=sys.stderr)
            return 1
        print(f"contracts up to date ({len(files)} files)")
        return 0
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path])
        print(f"wrote {path.relative_to(ROOT)}")
    for path in stale_schemas:
        path.unlink()
        print(f"removed {path.relative_to(ROOT)}")
    print(f"{len(files)} files, {len(changed) + len(stale_schemas)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
