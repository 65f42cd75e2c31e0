"""RedisTenantUsage: each tenant's Redis footprint under ``tenant:<id>:*``, and the latest
metrics snapshot per tenant (``tenant:<id>:metrics``, with a TTL). redis.asyncio only.

One SCAN pass over ``tenant:*`` serves every tenant (a SCAN per tenant would walk the whole
keyspace once per tenant: 10,000 walks per tick). Keys are bucketed by the id between the first
two colons (tenant ids cannot contain one). Per tenant, at most ``sample_keys`` keys get a
MEMORY USAGE, pipelined; bytes = mean sampled size x key count.

The figures are an ESTIMATE (``estimated=True``) when a tenant had more keys than were sampled,
or when the pass stopped at ``max_keys`` keys examined (then the key count is a lower bound).
SCAN may return a key twice while the keyspace rehashes; keys are de-duplicated per tenant.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from domain.errors import TransientError

PATTERN = "tenant:*"
_PIPELINE_CHUNK = 1000


def metrics_key(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:metrics"


@dataclass(frozen=True)
class RedisUsage:
    bytes: int
    keys: int
    estimated: bool


class RedisTenantUsage:
    def __init__(
        self, client: aioredis.Redis, *, scan_count: int, max_keys: int, sample_keys: int
    ) -> None:
        self._redis = client
        self._scan_count, self._max_keys, self._sample = scan_count, max_keys, sample_keys

    async def measure(self, tenant_ids: Iterable[str]) -> dict[str, RedisUsage]:
        """Usage of every tenant in ``tenant_ids`` (zero when it has no key)."""
        wanted = set(tenant_ids)
        keys: dict[str, set[bytes]] = {t: set() for t in wanted}
        examined, cursor, complete = 0, 0, False
        try:
            while examined < self._max_keys:
                cursor, batch = await self._redis.scan(
                    cursor=cursor, match=PATTERN, count=self._scan_count
                )
                for item in batch:
                    examined += 1
                    key = item if isinstance(item, bytes) else item.encode()
                    tenant = key.split(b":", 2)[1].decode("utf-8", "replace")
                    if tenant in keys:
                        keys[tenant].add(key)
                if cursor == 0:
                    complete = True
                    break
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
                estimated=not complete or len(sampled) < len(found),
            )
        return usage

    async def _memory_usage(self, keys: Mapping[str, set[bytes]]) -> dict[str, list[int]]:
        sample = [(t, k) for t, found in keys.items() for k in sorted(found)[: self._sample]]
        sizes: dict[str, list[int]] = {}
        for start in range(0, len(sample), _PIPELINE_CHUNK):
            chunk = sample[start : start + _PIPELINE_CHUNK]
            pipe = self._redis.pipeline(transaction=False)
            for _, key in chunk:
                pipe.memory_usage(key)
            for (tenant, _), size in zip(chunk, await pipe.execute(), strict=True):
                if size is not None:  # the key expired between SCAN and MEMORY USAGE
                    sizes.setdefault(tenant, []).append(int(size))
        return sizes

    async def store_snapshots(self, snapshots: Mapping[str, Mapping[str, Any]], ttl_s: int) -> None:
        """``tenant:<id>:metrics`` = the snapshot as JSON, expiring after ``ttl_s``."""
        items = list(snapshots.items())
        try:
            for start in range(0, len(items), _PIPELINE_CHUNK):
                pipe = self._redis.pipeline(transaction=False)
                for tenant, snapshot in items[start : start + _PIPELINE_CHUNK]:
                    pipe.set(metrics_key(tenant), json.dumps(snapshot, default=str), ex=ttl_s)
                await pipe.execute()
        except RedisError as e:
            raise TransientError(f"redis snapshots: {type(e).__name__}: {e}") from e

    async def snapshot(self, tenant_id: str) -> dict[str, Any] | None:
        try:
            raw = await self._redis.get(metrics_key(tenant_id))
        except RedisError as e:
            raise TransientError(f"redis get: {type(e).__name__}: {e}") from e
        return json.loads(raw) if raw else None
