"""What the CLI commands do, apart from argument parsing and printing."""

import asyncio
import contextlib
import dataclasses
from typing import Any

import asyncpg
from rich.console import Console
from rich.live import Live
from rich.table import Table

from adapters.kafka.event_reader import EventReader
from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.tenant_store import PostgresTenantStore
from contracts import codec, topics
from contracts.envelope import Envelope
from contracts.events import EVENT_TYPES, TenantRequested
from runtime.settings import Settings

CLI_SOURCE = "urn:tenantctl"


async def publish_event(settings: Settings, envelope: Envelope) -> None:
    publisher = KafkaEventPublisher(settings, client_id="tenantctl")
    await publisher.start()
    try:
        await publisher.publish(
            EVENT_TYPES[envelope.type].topic,
            topics.partition_key(envelope.subject),
            codec.encode(envelope),
            [(k, v.encode()) for k, v in codec.headers_for(envelope).items()],
        )
    finally:
        await publisher.stop()


async def request_tenant(
    settings: Settings, tenant_id: str, plan: str, wait: bool, timeout: float
) -> tuple[Envelope, Envelope | None]:
    envelope = codec.envelope_for(
        TenantRequested(tenant_id=tenant_id, plan=plan), source=CLI_SOURCE
    )
    if not wait:
        await publish_event(settings, envelope)
        return envelope, None
    async with EventReader(settings) as reader:  # positioned before we publish: nothing missed
        await publish_event(settings, envelope)
        return envelope, await first_result(reader, envelope.id, timeout)


async def first_result(reader: EventReader, causation_id: str, timeout: float) -> Envelope | None:
    async def scan() -> Envelope:
        async for result in reader:
            if result.causationid == causation_id:
                return result
        raise AssertionError("event stream ended")

    with contextlib.suppress(TimeoutError):
        return await asyncio.wait_for(scan(), timeout)
    return None


async def _with_store(settings: Settings, action: Any) -> Any:
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        return await action(
            conn,
            PostgresTenantStore(
                settings.names.control_schema,
                settings.names.app_role,
                tenant_prefix=settings.names.tenant_prefix,
            ),
        )
    finally:
        await conn.close()


async def tenant_status(settings: Settings, tenant_id: str) -> dict[str, Any] | None:
    async def get(conn: asyncpg.Connection, store: PostgresTenantStore) -> dict[str, Any] | None:
        record = await store.get(conn, tenant_id)
        return dataclasses.asdict(record) if record else None

    return await _with_store(settings, get)  # type: ignore[no-any-return]


async def list_tenants(settings: Settings) -> list[dict[str, Any]]:
    async def all_(conn: asyncpg.Connection, store: PostgresTenantStore) -> list[dict[str, Any]]:
        return [dataclasses.asdict(r) for r in await store.all(conn)]

    return await _with_store(settings, all_)  # type: ignore[no-any-return]


async def watch_events(
    settings: Settings, console: Console, from_beginning: bool, limit: int
) -> None:
    rows: list[tuple[str, ...]] = []
    seen = 0

    def render() -> Table:
        table = Table("time", "type", "tenant", "correlation", "details", title="tenants.events")
        for row in rows[-30:]:
            table.add_row(*row)
        return table

    async with EventReader(settings, from_beginning=from_beginning) as reader:
        with Live(render(), console=console, refresh_per_second=4) as live:
            async for env in reader:
                details = {k: v for k, v in env.data.items() if k != "tenant_id"}
                rows.append(
                    (
                        env.time.strftime("%H:%M:%S"),
                        env.type,
                        env.subject,
                        env.correlationid[:8],
                        str(details)[:80],
                    )
                )
                live.update(render())
                seen += 1
                if limit and seen >= limit:
                    return
