"""A private namespace per benchmark run on the shared local stack.

The stack is shared: other engineers' workers consume ``tenants.lifecycle`` in group
``tenant-provisioner`` and hold the relay's advisory lock. A benchmark that used them would split
its partitions with those workers and measure their relay. So, when ``BENCH_NAMESPACE`` is set,
this renames the topics and consumer groups in ``contracts.topics`` (and the topic each event
class belongs to) before any consumer is built; the worker code itself is unchanged. The control
schema and the relay lock id come from the same namespace through the ordinary TENANT_* settings.
"""

import os
import zlib

_TOPICS = ("LIFECYCLE", "BACKUPS", "METRICS", "EVENTS", "DLQ")
_GROUPS = ("PROVISIONER_GROUP", "BACKUP_GROUP", "METRICS_GROUP")


def namespace() -> str | None:
    return os.environ.get("BENCH_NAMESPACE") or None


def apply() -> None:
    ns = namespace()
    if not ns:
        return
    from contracts import events, topics

    if getattr(topics, "_bench_namespace", None) == ns:
        return
    renamed = {getattr(topics, n): f"{ns}.{getattr(topics, n)}" for n in _TOPICS}
    for name in _TOPICS:
        setattr(topics, name, renamed[getattr(topics, name)])
    topics.ALL_TOPICS = tuple(renamed[t] for t in topics.ALL_TOPICS)  # type: ignore[misc]
    for name in _GROUPS:
        if hasattr(topics, name):
            setattr(topics, name, f"{ns}-{getattr(topics, name)}")
    for model in events.EVENT_TYPES.values():
        if getattr(model, "topic", None) in renamed:
            model.topic = renamed[model.topic]  # type: ignore[misc]
    topics._bench_namespace = ns  # type: ignore[attr-defined]


def env() -> dict[str, str]:
    """TENANT_* overrides that give the namespace its own control schema and relay lock."""
    ns = namespace()
    assert ns, "BENCH_NAMESPACE is not set (bench/run sets it)"
    return {
        "BENCH_NAMESPACE": ns,
        "TENANT_CONTROL_SCHEMA": control_schema(ns),
        "TENANT_OUTBOX_LOCK_ID": str(lock_id(ns)),
        "TENANT_SCHEDULER_LOCK_ID": str(lock_id(ns) + 1),
        "TENANT_RETENTION_LOCK_ID": str(lock_id(ns) + 2),
    }


def control_schema(ns: str) -> str:
    return f"{ns}_control"


def lock_id(ns: str) -> int:
    return 900_000_000 + zlib.crc32(ns.encode()) % 100_000_000
