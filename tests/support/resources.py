"""Resources for assembling a role in a unit test: settings and an outbox, nothing connected."""

from typing import Any, cast

from faststream.kafka import KafkaBroker

from adapters.postgres.outbox import PostgresOutbox
from runtime.bootstrap import Resources
from runtime.settings import Settings


def unconnected_resources(settings: Settings) -> Resources:
    """What a role builder is given, minus I/O: no pool, publisher or Redis, a broker never
    started; enough to see which parts a role builds, not to run them."""
    return Resources(
        settings=settings,
        pool=cast(Any, None),
        publisher=cast(Any, None),
        broker=KafkaBroker("127.0.0.1:1"),
        redis=cast(Any, None),
        outbox=PostgresOutbox(settings.names.control_schema, settings.result_content_mode),
    )
