"""RedisTenantKeyspace: a tenant's keys in the shared Redis, found by SCAN and UNLINKed."""

from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from domain.errors import TransientError


class RedisTenantKeyspace:
    def __init__(self, redis: aioredis.Redis, *, prefix: str = "tenant:", batch: int = 500) -> None:
        """``prefix`` is the deployment's (runtime.names), never input."""
        self._redis, self._prefix, self._batch = redis, prefix, batch

    async def unlink_all(self, tenant_id: str) -> int:
        """Delete every ``<prefix><tenant>:*`` key, a SCAN batch at a time (UNLINK frees memory
        off the main thread); returns how many were deleted."""
        deleted = 0
        try:
            async for batch in self._batches(f"{self._prefix}{tenant_id}:*"):
                deleted += await self._redis.unlink(*batch)
        except (aioredis.ConnectionError, aioredis.TimeoutError) as e:
            raise TransientError(f"redis: {e}") from e
        return deleted

    async def _batches(self, pattern: str) -> AsyncIterator[list[bytes]]:
        batch: list[bytes] = []
        async for key in self._redis.scan_iter(match=pattern, count=self._batch):
            batch.append(key)
            if len(batch) >= self._batch:
                yield batch
                batch = []
        if batch:
            yield batch
