"""RedisTenantUsage: each tenant's Redis footprint under ``tenant:<id>:*``, and the latest
metrics snapshot per tenant (``tenant:<id>:metrics``, with a TTL). redis.asyncio only.

One SCAN pass over ``tenant:*`` serves every tenant (a SCAN per tenant would walk the whole
keyspace once per tenant: 10,000 walks per tick). Keys are bucketed by the id between the prefix
and the next colon (tenant ids cannot contain one). A namespaced deployment's keys are
``<ns>:tenant:<id>:*`` (the ``prefix`` given by runtime.names). Per tenant, at most ``sample_keys`` keys get a
MEMORY USAGE; bytes = mean sampled size x key count. MEMORY USAGE and the snapshots' SET EX go
through a short Lua script per ``_CHUNK`` keys: one command and one reply per chunk instead of
one per key, whose client-side cost (packing, parsing) was most of a tick's Redis time.

The figures are an ESTIMATE (``estimated=True``) when a tenant had more keys than were sampled,
or when the pass stopped at ``max_keys`` keys examined (then the key count is a lower bound).
SCAN may return a key twice while the keyspace rehashes; keys are de-duplicated per tenant.
scan() keeps the keys of every id it meets (it runs before the tenant list is known), so its
memory is bounded by ``max_keys`` as before, not by the registry.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from domain.errors import TransientError

PREFIX = "tenant:"  # a namespaced deployment's is "<ns>:tenant:" (runtime.names)
_CHUNK = 1000  # keys per script call: ~1 ms of server time, bounded reply
# Sizes as one comma-separated string (-1: the key expired between SCAN and MEMORY USAGE).
_MEMORY_USAGE = """
local sizes = {}
for i, key in ipairs(KEYS) do sizes[i] = redis.call('MEMORY', 'USAGE', key) or -1 end
return table.concat(sizes, ',')
"""
# ARGV[1] = TTL in seconds, ARGV[i + 1] = the value of KEYS[i].
_SET_EX = """
for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1]) end
return #KEYS
"""


def metrics_key(tenant_id: str, prefix: str = PREFIX) -> str:
    return f"{prefix}{tenant_id}:metrics"


@dataclass(frozen=True)
class KeyScan:
    """The keys of one SCAN pass by tenant id, and whether the pass covered the keyspace."""

    keys: Mapping[bytes, set[bytes]]
    complete: bool


@dataclass(frozen=True)
class RedisUsage:
    bytes: int
    keys: int
    estimated: bool


class RedisTenantUsage:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        scan_count: int,
        max_keys: int,
        sample_keys: int,
        prefix: str = PREFIX,
    ) -> None:
        self._redis = client
        # The prefix is the deployment's ([a-z0-9:] only: no glob characters to escape).
        self._prefix, self._pattern = prefix, prefix + "*"
        self._prefix_bytes = prefix.encode()
        self._memory_usage_script = client.register_script(_MEMORY_USAGE)
        self._set_ex_script = client.register_script(_SET_EX)
        self._scan_count, self._max_keys, self._sample = scan_count, max_keys, sample_keys

    async def scan(self) -> KeyScan:
        """One SCAN pass over ``tenant:*``, independent of the registry: the tick runs it while
        Postgres computes the figures."""
        keys: dict[bytes, set[bytes]] = {}
        examined, cursor = 0, 0
        try:
            while examined < self._max_keys:
                cursor, batch = await self._redis.scan(
                    cursor=cursor, match=self._pattern, count=self._scan_count
                )
                examined += len(batch)
                for item in batch:
                    key = item if isinstance(item, bytes) else item.encode()
                    tenant = key[len(self._prefix_bytes) :].split(b":", 1)[0]
                    found = keys.get(tenant)
                    if found is None:
                        keys[tenant] = {key}
                    else:
                        found.add(key)
                if cursor == 0:
                    return KeyScan(keys, complete=True)
        except RedisError as e:
            raise TransientError(f"redis usage: {type(e).__name__}: {e}") from e
        return KeyScan(keys, complete=False)

    async def measure(
        self, tenant_ids: Iterable[str], scanned: KeyScan | None = None
    ) -> dict[str, RedisUsage]:
        """Usage of every tenant in ``tenant_ids`` (zero when it has no key), from ``scanned``
        (taken meanwhile) or a new scan()."""
        scanned = scanned or await self.scan()
        empty: set[bytes] = set()
        keys = {t: scanned.keys.get(t.encode(), empty) for t in tenant_ids}
        try:
            sizes = await self._memory_usage(keys)
        except RedisError as e:
            raise TransientError(f"redis usage: {type(e).__name__}: {e}") from e
        usage = {}
        for tenant, found in keys.items():
            sampled = sizes.get(tenant, [])
            mean = sum(sampled) / len(sampled) if sampled else 0
            usage[tenant] = RedisUsage(
                bytes=round(mean * len(found)),
                keys=len(found),
                estimated=not scanned.complete or len(sampled) < len(found),
            )
        return usage

    async def _memory_usage(self, keys: Mapping[str, set[bytes]]) -> dict[str, list[int]]:
        sample = [
            (t, k)
            for t, found in keys.items()
            for k in (sorted(found)[: self._sample] if len(found) > self._sample else found)
        ]
        sizes: dict[str, list[int]] = {}
        for start in range(0, len(sample), _CHUNK):
            chunk = sample[start : start + _CHUNK]
            reply = await self._memory_usage_script(keys=[k for _, k in chunk])
            text = reply.decode() if isinstance(reply, bytes) else str(reply)
            for (tenant, _), size in zip(chunk, text.split(","), strict=True):
                if size != "-1":
                    sizes.setdefault(tenant, []).append(int(size))
        return sizes

    async def store_snapshots(self, snapshots: Mapping[str, Mapping[str, Any]], ttl_s: int) -> None:
        """``tenant:<id>:metrics`` = the snapshot as JSON, expiring after ``ttl_s``."""
        items = list(snapshots.items())
        try:
            for start in range(0, len(items), _CHUNK):
                chunk = items[start : start + _CHUNK]
                await self._set_ex_script(
                    keys=[metrics_key(t, self._prefix) for t, _ in chunk],
                    args=[ttl_s, *(json.dumps(s, default=str) for _, s in chunk)],
                )
        except RedisError as e:
            raise TransientError(f"redis snapshots: {type(e).__name__}: {e}") from e

    async def snapshot(self, tenant_id: str) -> dict[str, Any] | None:
        try:
            raw = await self._redis.get(metrics_key(tenant_id, self._prefix))
        except RedisError as e:
            raise TransientError(f"redis get: {type(e).__name__}: {e}") from e
        return json.loads(raw) if raw else None
