"""Rate limits per client and route: GCRA in Redis, one atomic Lua script per request.

GCRA keeps one number per bucket, the theoretical arrival time (TAT) of the next request. With a
limit of ``count`` per ``period``, each request moves the TAT on by ``period / count``; a request
is refused while the TAT would be more than a whole period ahead of now. The script reads the
clock from Redis (``TIME``), so every API process shares one clock and one bucket.
"""

import math
from dataclasses import dataclass
from typing import Any

# KEYS[1]: the bucket. ARGV: emission interval (ms), count. Returns {allowed, retry_after_ms,
# remaining, reset_ms}.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * count
if now < allow_at then
  return {0, allow_at - now, 0, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, math.ceil(new_tat - now)))
local remaining = math.floor((now + interval * count - new_tat) / interval)
return {1, 0, remaining, new_tat - now}
"""


@dataclass(frozen=True)
class Limit:
    count: int
    period_s: int

    @classmethod
    def parse(cls, text: str) -> "Limit":
        """``"60/60"`` -> 60 requests per 60 seconds (validated by the settings pattern)."""
        count, period = text.split("/")
        return cls(int(count), int(period))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: Limit
    remaining: int
    retry_after_s: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        """The IETF draft's fields (``RateLimit-*``), plus ``Retry-After`` when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit.count),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f"{self.limit.count};w={self.limit.period_s}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class RedisRateLimiter:
    def __init__(self, redis: Any, prefix: str) -> None:
        """``prefix``: the deployment's key prefix (runtime.names: ``<ns>:tenant-api:rl:``)."""
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(GCRA_LUA)

    async def check(self, client: str, route: str, limit: Limit) -> Decision:
        interval_ms = limit.period_s * 1000 / limit.count
        allowed, retry_ms, remaining, reset_ms = await self._script(
            keys=[f"{self._prefix}{route}:{client}"], args=[interval_ms, limit.count]
        )
        return Decision(
            allowed=bool(allowed),
            limit=limit,
            remaining=max(0, int(remaining)),
            retry_after_s=max(1, math.ceil(float(retry_ms) / 1000)),
            reset_s=max(0, math.ceil(float(reset_ms) / 1000)),
        )
