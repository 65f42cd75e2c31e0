"""Consumer lag per assigned partition (highwater - committed): FastStream doesn't export it."""

import asyncio
from typing import Any

import structlog

from runtime import metrics

log = structlog.get_logger(__name__)


async def watch_lag(subscribers: list[tuple[str, Any]], interval_s: float) -> None:
    """``subscribers`` are (group, FastStream subscriber) pairs; runs until cancelled."""
    while True:
        for group, subscriber in subscribers:
            # One consumer, or (max_workers > 1) a subgroup of them sharing the partitions.
            consumers = getattr(subscriber, "consumer_subgroup", None) or [
                c for c in [getattr(subscriber, "consumer", None)] if c is not None
            ]
            for consumer in consumers:
                await _record_lag(group, consumer)
        await asyncio.sleep(interval_s)


async def _record_lag(group: str, consumer: Any) -> None:
    try:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            committed = await consumer.committed(tp)
            if highwater is None:
                continue
            metrics.CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(
                max(0, highwater - (committed or 0))
            )
    except Exception as e:  # a rebalance in progress; next round will do
        log.debug("lag_unavailable", error=repr(e))
