"""FastStream's batch subscriber without its idle sleep.

FastStream's ``BatchSubscriber.get_msg`` waits up to ``batch_timeout_ms`` for records and, when
none came, sleeps ``batch_timeout_ms`` more before the next fetch. A record that arrives during
that sleep waits for it to end: an idle consumer is deaf half of the time, and a lone event
(paced requests) waits up to the whole timeout before it is even looked at. aiokafka's
``getmany`` already returns as soon as records are there and waits out the timeout otherwise,
so the next fetch can follow an empty one at once without spinning.
"""

from itertools import chain
from typing import Any, cast

from faststream.kafka.subscriber.usecase import BatchSubscriber


class PromptBatchSubscriber(BatchSubscriber):
    """A fetch that found nothing is followed by the next one at once (see the module doc)."""

    __slots__ = ()

    async def get_msg(self, consumer: Any) -> tuple[Any, ...]:
        assert consumer, "start the subscriber first"
        messages = await consumer.getmany(timeout_ms=self.batch_timeout_ms,
                                          max_records=self.max_records)
        return tuple(chain(*messages.values()))


def prompt(subscriber: Any) -> PromptBatchSubscriber:
    """``subscriber`` (FastStream's batch subscriber, as ``broker.subscriber(batch=True)`` made
    it) turned into a PromptBatchSubscriber. FastStream has no option for the subscriber class,
    hence the class change; the subclass adds no state, so the object stays whole."""
    if type(subscriber) is not BatchSubscriber:  # a FastStream upgrade changed what it makes
        raise TypeError(f"expected FastStream's BatchSubscriber, got {type(subscriber).__name__}")
    subscriber.__class__ = PromptBatchSubscriber
    return cast(PromptBatchSubscriber, subscriber)
