"""``tenantctl trace``: one business flow's causal chain across every topic, as a tree.

Every record of the input topics, the results and the dead letters is read from the beginning
(no consumer group: nothing is committed, nobody's offsets move). Each event is a node, keyed by
its CloudEvents ``id``; its children are the events whose ``causationid`` is that id. A node lists
every time the event was seen (its hops): published, dead-lettered by a group, replayed,
published again (a relay's duplicate). A request without our extensions is found by its ``id``,
which is also its correlation id.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.kafka import dead_letters as dlq
from adapters.kafka.event_reader import topic_partitions
from contracts import topics
from contracts.codec import InvalidMessage, read_envelope
from contracts.envelope import Envelope
from contracts.tracecontext import trace_of
from runtime.settings import Settings

TRACED_TOPICS = (topics.LIFECYCLE, topics.BACKUPS, topics.METRICS, topics.EVENTS, topics.DLQ)
# The group that handles each input topic (and so produces the results of its events).
HANDLER_GROUPS = {
    topics.LIFECYCLE: topics.PROVISIONER_GROUP,
    topics.BACKUPS: topics.BACKUP_GROUP,
    topics.METRICS: topics.METRICS_GROUP,
}


@dataclass(frozen=True)
class Hop:
    """One sighting of an event: a record in a topic."""

    topic: str
    partition: int
    offset: int
    at: datetime  # the record's Kafka timestamp
    kind: str = "published"  # published | dead_lettered | replayed | republished
    group: str | None = None  # the group that handled it, or dead-lettered it
    reason: str | None = None  # why it was dead-lettered

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "time": self.at.isoformat().replace("+00:00", "Z"),
            "group": self.group,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Sighting:
    """A record read back: its envelope and where and when it was."""

    envelope: Envelope
    hop: Hop


@dataclass
class Node:
    """One event (by id) with its hops and the events it caused."""

    envelope: Envelope
    hops: list[Hop] = field(default_factory=list)
    children: list["Node"] = field(default_factory=list)

    @property
    def first_seen(self) -> datetime:
        return min(h.at for h in self.hops)

    def as_dict(self) -> dict[str, Any]:
        env = self.envelope
        parent, _ = trace_of(env)
        return {
            "id": env.id,
            "type": env.type,
            "subject": env.subject,
            "source": env.source,
            "correlationid": env.correlationid,
            "causationid": env.causationid,
            "traceparent": str(parent) if parent else None,
            "hops": [h.as_dict() for h in self.hops],
            "children": [c.as_dict() for c in self.children],
        }


def _logical_group(names: topics.Topics) -> Callable[[str], str]:
    physical = {names.group(g): g for g in topics.ALL_GROUPS}
    return lambda group: physical.get(group, group)


def sighting(
    topic: str, partition: int, offset: int, timestamp_ms: int, value: bytes,
    headers: Sequence[tuple[str, bytes]],
    logical_group: Callable[[str], str] = lambda group: group,
) -> Sighting | None:
    """The envelope and hop of one record (on its logical topic), or None when it holds no
    CloudEvent; ``logical_group`` maps a dead letter's physical group to its logical name."""
    at = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    if topic == topics.DLQ:
        why = {k: v.decode("utf-8", "replace") for k, v in headers if k.startswith("x-dlq-")}
        original = [(k, v) for k, v in headers if not k.startswith("x-dlq-")]
        group = why.get(dlq.GROUP)
        hop = Hop(topic, partition, offset, at, "dead_lettered",
                  logical_group(group) if group else None, why.get(dlq.REASON))
        headers = original
    else:
        hop = Hop(topic, partition, offset, at)
    try:
        return Sighting(read_envelope(value, headers), hop)
    except InvalidMessage:
        return None


def select(sightings: Iterable[Sighting], query: str) -> list[Sighting]:
    """The sightings of the flow ``query`` names: a correlation id, an event id (its whole
    flow), or a W3C trace id."""
    every = list(sightings)
    correlations = {
        s.envelope.correlationid
        for s in every
        if query in (s.envelope.id, s.envelope.correlationid) or _trace_id(s.envelope) == query
    }
    return [s for s in every if s.envelope.correlationid in correlations]


def build_tree(sightings: Iterable[Sighting]) -> list[Node]:
    """The roots (events nothing in view caused) with their descendants, oldest first. Hops of
    one event are in time order; the group that handled an input event is filled in."""
    nodes: dict[str, Node] = {}
    for s in sorted(sightings, key=lambda s: (s.hop.at, s.hop.topic, s.hop.offset)):
        node = nodes.setdefault(s.envelope.id, Node(s.envelope))
        node.hops.append(_label(s.hop, node.hops))
    roots: list[Node] = []
    for node in nodes.values():
        parent = nodes.get(node.envelope.causationid or "")
        if parent is None or parent is node:
            roots.append(node)
            continue
        parent.children.append(node)
        # A result was produced by the group that handled its cause.
        producer = HANDLER_GROUPS.get(parent.hops[0].topic)
        node.hops = [
            replace(h, group=producer) if h.topic == topics.EVENTS and h.group is None else h
            for h in node.hops
        ]
    for node in nodes.values():
        node.children.sort(key=lambda n: n.first_seen)
    return sorted(roots, key=lambda n: n.first_seen)


def _label(hop: Hop, earlier: list[Hop]) -> Hop:
    if hop.kind == "dead_lettered":
        return hop
    group = HANDLER_GROUPS.get(hop.topic)
    if not earlier:
        return Hop(hop.topic, hop.partition, hop.offset, hop.at, "published", group)
    # Seen before: after a dead letter it is a replay, else the producer published it again
    # (a relay crash between publish and mark; consumers skip it by id).
    kind = "replayed" if any(h.kind == "dead_lettered" for h in earlier) else "republished"
    return Hop(hop.topic, hop.partition, hop.offset, hop.at, kind, group)


def render(roots: Sequence[Node]) -> list[str]:
    """The tree as text lines: each event, then its hops, then its children."""
    lines: list[str] = []

    def walk(node: Node, prefix: str, last: bool, top: bool) -> None:
        env = node.envelope
        branch = "" if top else ("└─ " if last else "├─ ")
        lines.append(f"{prefix}{branch}{env.type} {env.id} (tenant {env.subject})")
        inner = prefix + ("" if top else ("   " if last else "│  "))
        for hop in node.hops:
            what = f"{hop.kind} {hop.topic}[{hop.partition}]@{hop.offset}"
            role = "from" if hop.topic == topics.EVENTS else _ROLE.get(hop.kind, "by")
            by = f" {role} {hop.group}" if hop.group else ""
            reason = f": {hop.reason}" if hop.reason else ""
            stamp = hop.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            lines.append(f"{inner}· {stamp} {what}{by}{reason}")
        for i, child in enumerate(node.children):
            walk(child, inner, i == len(node.children) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    return lines


_ROLE = {"dead_lettered": "by", "published": "handled by", "replayed": "handled by"}


def _trace_id(envelope: Envelope) -> str | None:
    parent, _ = trace_of(envelope)
    return parent.trace_id if parent else None


async def read_sightings(settings: Settings, idle_s: float = 2.0) -> list[Sighting]:
    """Every CloudEvent now in the traced topics (up to the end offsets seen at the start)."""
    names = settings.names.topics  # the deployment's physical names; hops show logical ones
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        existing = await consumer.topics()  # a topic not created yet holds nothing to trace
        parts: list[TopicPartition] = []
        for topic in (names.topic(t) for t in TRACED_TOPICS if names.topic(t) in existing):
            parts += await topic_partitions(consumer, topic)
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        found: list[Sighting] = []
        remaining = {tp for tp in parts if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=int(idle_s * 1000))
            if not batch:
                break
            for tp, records in batch.items():
                for r in records:
                    if r.offset < ends[tp] and (
                        s := sighting(names.logical(r.topic), r.partition, r.offset,
                                      r.timestamp, r.value or b"", list(r.headers or ()),
                                      logical_group=_logical_group(names))
                    ):
                        found.append(s)
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return found
    finally:
        await consumer.stop()
