"""``dlq replay --all`` replays each dead letter once, committing only what it published.

A fake tenants.dlq (partitions of records, and the replay group's committed offsets, which
outlive a run like Kafka's do) and a fake producer stand in for Kafka. The deployment has a
namespace: its DLQ topic and replay group are its own, and it replays only to its own topics.
"""

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from contracts import topics
from runtime.names import Names
from tenantctl import dlq_ops

NAMES = Names.of("staging", control_schema="tenant_service", outbox_lock_id=1, scheduler_lock_id=2)
SETTINGS: Any = SimpleNamespace(names=NAMES, kafka=None)  # all dlq_ops reads of the settings here
DLQ = NAMES.topics.dlq
DLQ0, DLQ1 = TopicPartition(DLQ, 0), TopicPartition(DLQ, 1)


@dataclass
class Record:
    partition: int
    offset: int
    value: bytes
    key: bytes = b"k"
    headers: list[tuple[str, bytes]] = field(
        default_factory=lambda: [("x-dlq-source-topic", NAMES.topics.lifecycle.encode())]
    )


class FakeDlq:
    """The topic's logs and the group's committed offsets: what survives between runs."""

    def __init__(self) -> None:
        self.logs: dict[TopicPartition, list[Record]] = {DLQ0: [], DLQ1: []}
        self.committed: dict[TopicPartition, int] = {}

    def add(self, partition: int, value: bytes, source: str = NAMES.topics.lifecycle) -> str:
        tp = TopicPartition(DLQ, partition)
        headers = [("x-dlq-source-topic", source.encode())]
        self.logs[tp].append(Record(partition, len(self.logs[tp]), value, headers=headers))
        return f"{partition}:{len(self.logs[tp]) - 1}"


class FakeConsumer:
    def __init__(self, dlq: FakeDlq) -> None:
        self._dlq, self._pos = dlq, {tp: 0 for tp in dlq.logs}

    def assignment(self) -> set[TopicPartition]:
        return set(self._dlq.logs)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self._dlq.committed.get(tp)

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self._pos[tp] = 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._pos[tp] = offset

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self._dlq.logs[tp]) for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self._pos[tp]

    async def getmany(self, *tps: TopicPartition, timeout_ms: int, max_records: int) -> Any:
        out = {}
        for tp in tps:
            records = self._dlq.logs[tp][self._pos[tp] : self._pos[tp] + 2]  # small batches
            if records:
                out[tp] = records
                self._pos[tp] += len(records)
        return out

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self._dlq.committed.update(offsets)

    async def stop(self) -> None:
        pass


class FakePublisher:
    sent: list[bytes] = []
    fail = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def publish_many(self, batch: list[tuple[str, bytes, bytes, Any]]) -> None:
        if FakePublisher.fail:
            raise ConnectionError("broker gone")
        FakePublisher.sent.extend(value for _, _, value, _ in batch)


@pytest.fixture
def dlq(monkeypatch: pytest.MonkeyPatch) -> FakeDlq:
    fake = FakeDlq()

    async def consumer(settings: Any, group_id: str | None) -> FakeConsumer:
        assert group_id == "staging-" + topics.DLQ_REPLAY_GROUP  # never another deployment's
        return FakeConsumer(fake)

    monkeypatch.setattr(dlq_ops, "_consumer", consumer)
    monkeypatch.setattr(dlq_ops, "KafkaEventPublisher", FakePublisher)
    FakePublisher.sent, FakePublisher.fail = [], False
    return fake


async def _replay() -> list[str]:
    return (await dlq_ops.replay_new(SETTINGS, lambda n: None)).replayed


async def test_each_dead_letter_is_replayed_once(dlq: FakeDlq) -> None:
    first = [dlq.add(0, b"a"), dlq.add(0, b"b"), dlq.add(0, b"c"), dlq.add(1, b"d")]
    assert sorted(await _replay()) == sorted(first)
    assert await _replay() == []
    later = dlq.add(1, b"e")
    assert await _replay() == [later]
    assert sorted(FakePublisher.sent) == [b"a", b"b", b"c", b"d", b"e"]


async def test_a_batch_that_was_not_published_is_not_marked_replayed(dlq: FakeDlq) -> None:
    ids = [dlq.add(0, b"a"), dlq.add(0, b"b")]
    FakePublisher.fail = True
    with pytest.raises(ConnectionError):
        await _replay()
    assert dlq.committed == {}
    FakePublisher.fail = False
    assert await _replay() == ids


async def test_a_letter_from_another_namespace_is_skipped_not_replayed(dlq: FakeDlq) -> None:
    ours = dlq.add(0, b"ours")
    theirs = dlq.add(0, b"theirs", source=topics.Topics("prod").lifecycle)
    done = await dlq_ops.replay_new(SETTINGS, lambda n: None)
    assert (done.replayed, done.skipped) == ([ours], [theirs])
    assert FakePublisher.sent == [b"ours"]
