"""publish_many lays records into one batch per partition: on the real broker, every record
lands once, where a plain ``AIOKafkaProducer.send`` of the same key lands, in the order given
per key, with its headers byte for byte; records beyond a full batch go in the next one."""

import contextlib
import dataclasses
import secrets
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from adapters.kafka.producer import KafkaEventPublisher
from runtime.settings import Settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack

PARTITIONS = 4


async def test_records_land_once_where_the_default_partitioner_puts_them(settings: Settings) -> None:
    topic = f"tenant-service.test.publisher-batches-{secrets.token_hex(4)}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()
    # Batches of 2 KiB: 400 records of ~150 bytes fill several per partition.
    config = dataclasses.replace(settings.kafka, record_bytes=2048)
    publisher = KafkaEventPublisher(config, client_id="test-publisher-batches")
    keys = [f"tenant_{n:03d}".encode() for n in range(23)]
    messages = [
        (topic, keys[n % len(keys)], f'{{"n":{n},"pad":"{"x" * 100}"}}'.encode(),
         [("ce_id", f"id-{n}".encode()), ("raw", bytes([n % 256, 0, 255]))])
        for n in range(400)
    ]
    messages.append((topic, None, b'{"n":"no key"}', []))
    try:
        await publisher.publish_many(messages)
    finally:
        await publisher.stop()

    reference = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await reference.start()
    try:  # where Kafka's own client puts each key: the same partitioner, over the real metadata
        expected = {key: (await (await reference.send(topic, b"", key=key))).partition
                    for key in keys}
    finally:
        await reference.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    got: list = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])

        async def all_read() -> bool:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                got.extend(batch)
            return len(got) >= len(messages) + len(keys)

        await wait_until(all_read, 30, what="every record read back")
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()

    ours = [r for r in got if r.value != b""]  # the reference's probes carry empty values
    assert len(ours) == len(messages)
    by_key: dict[bytes | None, list[int]] = defaultdict(list)
    for record in sorted(ours, key=lambda r: (r.partition, r.offset)):
        if record.key is None:
            continue
        n = int(record.value.split(b",")[0].removeprefix(b'{"n":'))
        assert record.partition == expected[record.key], (record.key, record.partition)
        assert list(record.headers) == list(messages[n][3])
        by_key[record.key].append(n)
    for key in keys:  # each key's records once, in the order given
        assert by_key[key] == [n for n in range(400) if keys[n % len(keys)] == key]
    assert [r.value for r in ours if r.key is None] == [b'{"n":"no key"}']
