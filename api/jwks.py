"""Signing keys fetched from the identity provider's JWKS URL, cached for a TTL.

Why a cache with two clocks: the keys are needed on every request, but the issuer must not be
asked for them on every request. A set older than the TTL is fetched again on the next token; a
token naming a ``kid`` the set does not hold (the issuer rotated its keys) triggers one refresh,
but at most one per ``min_refresh_s``, so a flood of tokens with made-up kids costs the issuer
one request per interval, not one per token. A failed refresh keeps the last good set: an issuer
outage does not log every client out. Until a first set arrives, every token is refused and
/readyz answers 503.
"""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import jwt
import structlog

log = structlog.get_logger(__name__)

Fetcher = Callable[[], Awaitable[dict[str, Any]]]
MAX_JWKS_BYTES = 256 * 1024  # a key set is a few KB; more is not a key set


class KeysUnavailable(Exception):
    """No key set has been fetched yet (the issuer has not answered since start-up)."""


def http_fetcher(url: str, timeout_s: float) -> Fetcher:
    """A fetcher that GETs ``url`` with httpx (asynchronous: the event loop never blocks)."""

    async def fetch() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
            async with client.stream("GET", url, headers={"Accept": "application/json"}) as r:
                r.raise_for_status()
                body = b""
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("JWKS is not a JSON object")
        return document

    return fetch


class JwksCache:
    """The issuer's key set, fetched with ``fetch`` and kept ``ttl_s`` seconds."""

    def __init__(
        self,
        fetch: Fetcher,
        *,
        ttl_s: float,
        min_refresh_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch, self._ttl, self._min_refresh, self._clock = fetch, ttl_s, min_refresh_s, clock
        self._keys: jwt.PyJWKSet | None = None
        self._fetched_at = -float("inf")  # when the current set arrived
        self._tried_at = -float("inf")  # when a fetch last started, good or bad
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._keys is not None

    async def key_set(self, kid: str | None) -> jwt.PyJWKSet:
        """The key set to verify a token with ``kid``: refreshed when older than the TTL, or
        when it lacks ``kid`` and the last attempt is older than the refresh interval."""
        now = self._clock()
        if self._keys is None or now - self._fetched_at >= self._ttl:
            await self._refresh(force=False)
        elif kid is not None and not _has(self._keys, kid):
            await self._refresh(force=True)
        if self._keys is None:
            raise KeysUnavailable("the JWKS URL has not answered yet")
        return self._keys

    async def ensure(self) -> bool:
        """Fetch a first set if there is none (within the refresh interval); True when loaded.
        Start-up and /readyz call it."""
        if self._keys is None:
            await self._refresh(force=True)
        return self._keys is not None

    async def _refresh(self, force: bool) -> None:
        async with self._lock:  # one fetch at a time; the waiters use its result
            now = self._clock()
            if now - self._tried_at < self._min_refresh:
                return  # asked very recently (or being rate-limited): use what we have
            if not force and self._keys is not None and now - self._fetched_at < self._ttl:
                return  # another waiter refreshed it meanwhile
            self._tried_at = now
            try:
                keys = jwt.PyJWKSet.from_dict(await self._fetch())
            except Exception as e:  # noqa: BLE001  (any failure keeps the last good set)
                log.warning(
                    "api_jwks_fetch_failed",
                    error=f"{type(e).__name__}: {e}",
                    stale=bool(self._keys),
                )
                return
            self._keys, self._fetched_at = keys, self._clock()
            log.info("api_jwks_fetched", kids=[k.key_id for k in keys.keys])


def _has(keys: jwt.PyJWKSet, kid: str) -> bool:
    return any(k.key_id == kid for k in keys.keys)
