"""A downstream service's consumer of TenantProvisioned, using only the client package.

    pip install './clients/python[aiokafka]'
    python examples/tenant_provisioned_consumer.py --bootstrap 127.0.0.1:9092 --group my-service

Reads tenants.events (``<namespace>.tenants.events`` with ``--namespace``, the deployment's
TENANT_NAMESPACE) in a consumer group of its own, decodes every record in either content mode
of the CloudEvents Kafka binding, and prints one JSON line per TenantProvisioned (what a real
service would act on: create the tenant's workspace, send the welcome mail...). Other result types
are skipped; a record that is not a valid event is reported on stderr and skipped, since a
downstream reader cannot fix the producer. ``--tenant`` keeps one tenant, ``--count`` stops after
that many. It commits offsets only after an event is handled (at-least-once): handlers must be
idempotent, keyed by the event's ``id``.
"""

import argparse
import asyncio
import json
import os
import sys

from aiokafka import AIOKafkaConsumer

from contracts import topics
from contracts.codec import DecodeLimits, InvalidMessage, decode
from contracts.events import TenantProvisioned

# A downstream reader may run long after the event: accept any age, but not a broken clock.
LIMITS = DecodeLimits(max_bytes=1_048_576, max_future_s=300.0, max_age_s=10 * 365 * 86_400.0)


def handle(
    event: TenantProvisioned, event_id: str, correlation_id: str, causation_id: str | None
) -> None:
    """The service's reaction; here, a line on stdout."""
    line = {
        "type": "TenantProvisioned",
        "id": event_id,
        "correlationid": correlation_id,
        "causationid": causation_id,
        **event.model_dump(mode="json"),
    }
    print(json.dumps(line), flush=True)


async def consume(
    bootstrap: str, group: str, tenant: str | None, count: int | None, namespace: str = ""
) -> None:
    names = topics.Topics(namespace)
    consumer = AIOKafkaConsumer(
        names.events,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    handled = 0
    try:
        async for record in consumer:
            try:
                decoded = decode(
                    record.value or b"",
                    key=record.key,
                    topic=names.logical(record.topic),
                    limits=LIMITS,
                    headers=record.headers,
                )
            except InvalidMessage as e:
                print(
                    f"skipped {record.topic}/{record.partition}@{record.offset}: {e}",
                    file=sys.stderr,
                )
                await consumer.commit()
                continue
            event = decoded.event
            if isinstance(event, TenantProvisioned) and tenant in (None, event.tenant_id):
                env = decoded.envelope
                handle(event, env.id, env.correlationid, env.causationid)
                handled += 1
            await consumer.commit()
            if count is not None and handled >= count:
                return
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--group", default="tenant-provisioned-example", help="consumer group")
    parser.add_argument("--tenant", help="only this tenant's TenantProvisioned")
    parser.add_argument("--count", type=int, help="exit after this many")
    parser.add_argument(
        "--namespace",
        default=os.environ.get("TENANT_NAMESPACE", ""),
        help="the deployment's TENANT_NAMESPACE (default: that variable; empty for none)",
    )
    args = parser.parse_args()
    asyncio.run(consume(args.bootstrap, args.group, args.tenant, args.count, args.namespace))


if __name__ == "__main__":
    main()
