"""What the CLI commands do, apart from argument parsing and printing."""

import asyncio
import contextlib
import dataclasses
from typing import Any

import asyncpg

from adapters.kafka.event_reader import EventReader
from adapters.kafka.producer import KafkaEventPublisher
from adapters.kafka.requests import publish_requests
from adapters.postgres.tenant_store import PostgresTenantStore
from contracts import codec
from contracts.envelope import Envelope
from contracts.events import TenantRequested
from domain.lifecycle import TenantStatus
from runtime.settings import Settings
from tenantctl.dlq_ops import DeadLettered, DeadLetterWatch

__all__ = ["CLI_SOURCE", "DeadLettered", "first_result", "publish_and_wait", "publish_event"]

CLI_SOURCE = "urn:tenantctl"


async def publish_event(settings: Settings, envelope: Envelope) -> None:
    publisher = KafkaEventPublisher(settings.kafka, client_id="tenantctl")
    await publisher.start()
    try:
        await publish_requests(publisher, [envelope])
    finally:
        await publisher.stop()


async def request_tenant(
    settings: Settings, tenant_id: str, plan: str, wait: bool, timeout: float
) -> tuple[Envelope, Envelope | DeadLettered | None]:
    envelope = codec.envelope_for(
        TenantRequested(tenant_id=tenant_id, plan=plan), source=CLI_SOURCE
    )
    return await publish_and_wait(settings, envelope, wait, timeout)


async def publish_and_wait(
    settings: Settings, envelope: Envelope, wait: bool, timeout: float
) -> tuple[Envelope, "Envelope | DeadLettered | None"]:
    """Publish; with ``wait``, the result event, the dead letter it became, or None (timeout)."""
    if not wait:
        await publish_event(settings, envelope)
        return envelope, None
    async with (
        EventReader(settings.kafka) as reader,  # positioned before we publish: nothing missed
        DeadLetterWatch(settings) as dead_letters,
    ):
        await publish_event(settings, envelope)
        return envelope, await first_result(reader, envelope.id, timeout, dead_letters)


async def first_result(
    reader: EventReader,
    causation_id: str,
    timeout: float,
    dead_letters: DeadLetterWatch | None = None,
) -> "Envelope | DeadLettered | None":
    """The first result caused by ``causation_id``, or its dead letter, within ``timeout``."""

    async def scan() -> Envelope:
        async for result in reader:
            if result.causationid == causation_id:
                return result
        raise AssertionError("event stream ended")

    waits: list[asyncio.Task[Any]] = [asyncio.create_task(scan())]
    if dead_letters is not None:
        waits.append(asyncio.create_task(dead_letters.find(causation_id)))
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        return done.pop().result() if done else None
    finally:
        for task in waits:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waits, return_exceptions=True)


async def _with_store(settings: Settings, action: Any) -> Any:
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        return await action(
            conn,
            settings.names.tenant_store(),
        )
    finally:
        await conn.close()


async def tenant_status(settings: Settings, tenant_id: str) -> dict[str, Any] | None:
    async def get(conn: asyncpg.Connection, store: PostgresTenantStore) -> dict[str, Any] | None:
        record = await store.get(conn, tenant_id)
        return dataclasses.asdict(record) if record else None

    return await _with_store(settings, get)  # type: ignore[no-any-return]


async def list_tenants(
    settings: Settings,
    status: TenantStatus | None = None,
    plan: str | None = None,
    *,
    include_erased: bool = False,
) -> list[dict[str, Any]]:
    """Registry rows; erased tenants (tombstones) only when asked for, by flag or by status."""

    def wanted(r: Any) -> bool:
        if status is not None:
            return bool(r.status == status)
        return include_erased or r.status != TenantStatus.ERASED

    async def all_(conn: asyncpg.Connection, store: PostgresTenantStore) -> list[dict[str, Any]]:
        return [
            dataclasses.asdict(r)
            for r in await store.all(conn)
            if wanted(r) and (plan is None or r.plan == plan)
        ]

    return await _with_store(settings, all_)  # type: ignore[no-any-return]
