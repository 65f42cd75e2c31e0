"""The HTTP API: reads, the rate limiter's cost, and command -> operation done.

Three rows, each beside a baseline measured in the same run:
- ``GET /v1/tenants/{id}`` from an ``api`` worker (token check, rate limit, read-only pool), with
  CONCURRENCY requests in flight for DURATION_S: requests/s and p99, against a bare uvicorn app
  answering a fixed JSON body of the same size, driven by the same client the same way;
- the rate limiter's cost per request: ``RedisRateLimiter.check`` (the GCRA Lua script the API
  runs once per request) called back to back, against a bare Redis ``PING`` on the same client
  (with = ping + script work, without = the round trip alone);
- ``POST /v1/tenants/{id}:suspend`` paced at RATE/s, one tenant each: send -> the first poll of
  the operation that answers ``done`` (polled every POLL_S, so POLL_S is the resolution), p99.
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from api.ratelimit import Limit, RedisRateLimiter
from api.tokens import ensure_dev_key, mint
from bench import common, tenants
from bench.common import Row, percentile
from bench.workers import Worker, Workers, _free_port

CONCURRENCY = 8
DURATION_S = float(os.environ.get("BENCH_API_SECONDS", "5"))
LIMITER_CALLS = 2000
RATE = 5.0  # commands/s
POLL_S = 0.05
SCOPES = ["tenants:read", "tenants:write"]

# A bare uvicorn app: the same server, no framework, no auth, no database.
_BARE = """
import sys, uvicorn
body = sys.argv[2].encode()
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


async def _load(url: str, headers: dict[str, str]) -> tuple[float, list[float]]:
    """(requests/s, latencies) of CONCURRENCY loops GETting ``url`` for DURATION_S."""
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        await client.get(url)  # warm the connection pool
        end = time.perf_counter() + DURATION_S

        async def loop() -> None:
            while time.perf_counter() < end:
                t = time.perf_counter()
                answer = await client.get(url)
                answer.raise_for_status()
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
    return len(latencies) / (time.perf_counter() - start), latencies


async def _until_up(url: str, proc: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(300):
            if proc.returncode is not None:
                raise RuntimeError(f"{url} exited")
            try:
                await client.get(url)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not up")


async def _limiter(settings) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    """Microseconds per call: (limiter check, bare PING), alternated per repetition."""
    redis = aioredis.Redis.from_url(settings.redis_url.get_secret_value())
    limiter, limit = RedisRateLimiter(redis, prefix="bench-rl:"), Limit(10**9, 60)
    ours, bare = [], []
    try:
        await limiter.check("bench", "warm", limit)
        for _ in range(common.REPS):
            t = time.perf_counter()
            for i in range(LIMITER_CALLS):
                await limiter.check(f"c{i % 50}", "GET /v1/tenants/{tenant_id}", limit)
            ours.append((time.perf_counter() - t) / LIMITER_CALLS * 1e6)
            t = time.perf_counter()
            for _ in range(LIMITER_CALLS):
                await redis.ping()
            bare.append((time.perf_counter() - t) / LIMITER_CALLS * 1e6)
    finally:
        await redis.aclose()
    return ours, bare


async def _commands(url: str, headers: dict[str, str], ids: list[str]) -> list[float]:
    """Seconds from sending ``:suspend`` to the first poll that sees the operation done."""
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client:

        async def one(tenant_id: str) -> float:
            t = time.perf_counter()
            answer = await client.post(f"/v1/tenants/{tenant_id}:suspend")
            assert answer.status_code == 202, answer.text
            name = answer.json()["name"]
            # Polling is what a client does, and what is measured.
            while not (await client.get(f"/v1/{name}")).json()["done"]:  # noqa: ASYNC110
                await asyncio.sleep(POLL_S)
            return time.perf_counter() - t

        tasks = []
        start = time.perf_counter()
        for n, tenant_id in enumerate(ids):
            await asyncio.sleep(max(0.0, start + n / RATE - time.perf_counter()))
            tasks.append(asyncio.create_task(one(tenant_id)))
        return list(await asyncio.gather(*tasks))


async def run(commands: int) -> list[Row]:
    settings = common.settings()
    await tenants.ensure_control(settings)
    reps = common.REPS
    ids = common.tenant_ids(1 + commands * reps, "a")
    await tenants.create_parallel(settings, ids, tenants.latest_steps())
    key, jwks = ensure_dev_key(Path(tempfile.mkdtemp(prefix="bench-api-")) / "key.pem")
    token = mint(key, sub="bench", scopes=SCOPES, audience=settings.api_jwt_audience)
    headers = {"Authorization": f"Bearer {token}"}
    api_port, bare_port = _free_port(), _free_port()
    os.environ |= {  # read by the api worker (Worker copies os.environ)
        "TENANT_API_PORT": str(api_port),
        "TENANT_API_JWKS_FILE": str(jwks),
        "TENANT_API_RATE_LIMIT_READ": "1000000000/60",
        "TENANT_API_RATE_LIMIT_WRITE": "1000000000/60",
    }
    api_url = f"http://127.0.0.1:{api_port}"
    ours_rps, bare_rps, ours_p99, bare_p99, done = [], [], [], [], []
    try:
        async with Workers(settings, 1):
            api = Worker(["api"], f"{time.strftime('%H%M%S')}-api")
            try:
                await api.ready()
                one = f"{api_url}/v1/tenants/{ids[0]}"
                async with httpx.AsyncClient(headers=headers) as client:
                    body = (await client.get(one)).text
                bare = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", _BARE, str(bare_port), body,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                try:
                    await _until_up(f"http://127.0.0.1:{bare_port}/", bare)
                    for rep in range(reps):
                        rps, lat = await _load(one, headers)
                        brps, blat = await _load(f"http://127.0.0.1:{bare_port}/", {})
                        ours_rps.append(rps)
                        bare_rps.append(brps)
                        ours_p99.append(percentile(lat, 99) * 1000)
                        bare_p99.append(percentile(blat, 99) * 1000)
                        print(f"  rep {rep}: GET {rps:.0f}/s p99 {ours_p99[-1]:.1f} ms;"
                              f" bare {brps:.0f}/s p99 {bare_p99[-1]:.1f} ms", flush=True)
                finally:
                    bare.terminate()
                    await bare.wait()
                limiter_us, ping_us = await _limiter(settings)
                for rep in range(reps):
                    chunk = ids[1 + rep * commands:1 + (rep + 1) * commands]
                    done.append(percentile(await _commands(api_url, headers, chunk), 99))
                    print(f"  rep {rep}: command -> done p99 {done[-1]:.2f}s", flush=True)
            finally:
                api.stop()
    finally:
        await common.drop_tenants_now(ids)
    conc = f"{CONCURRENCY} in flight × {DURATION_S:g}s"
    return [
        Row("api GET tenant", conc, "requests/s", ours_rps, bare_rps, "bare uvicorn endpoint",
            notes="token check + rate limit + read pool; same client, same concurrency"),
        Row("api GET tenant p99", conc, "ms", ours_p99, bare_p99, "bare uvicorn endpoint",
            higher_is_better=False),
        Row("api rate limiter", f"{LIMITER_CALLS} checks", "µs per request", limiter_us, ping_us,
            "bare Redis PING", higher_is_better=False,
            notes="with = the GCRA script the API runs per request; without = the round trip"),
        Row("api command → operation done", f"{commands} × :suspend at {RATE:g}/s", "s p99",
            done, higher_is_better=False, goal="p99 < 1 s", met=min(done) < 1.0 if done else None,
            notes=f"send → first poll seeing done; polled every {POLL_S * 1000:g} ms"),
    ]


if __name__ == "__main__":
    common.save("api", asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 30)))
