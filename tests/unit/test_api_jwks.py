"""The JWKS-from-a-URL policy: a TTL, a refresh on an unknown kid at most once per interval, the
last good set kept through an outage; and the settings that choose the key source."""

import json
from pathlib import Path
from typing import Any

import pytest

from api.auth import InvalidToken, TokenVerifier
from api.jwks import JwksCache, KeysUnavailable
from api.server import build_verifier
from api.tokens import ensure_dev_key, mint
from runtime.settings import Settings, SettingsError

AUD = "tenant-service"


class FakeIssuer:
    """Serves key sets in turn; counts the fetches; fails while ``down``."""

    def __init__(self, *sets: dict[str, Any]) -> None:
        self.sets, self.fetches, self.down = list(sets), 0, False

    async def fetch(self) -> dict[str, Any]:
        self.fetches += 1
        if self.down:
            raise OSError("issuer down")
        return self.sets[0]

    def rotate(self) -> None:
        self.sets.pop(0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _jwks(folder: Path, kid: str) -> tuple[Any, dict[str, Any]]:
    key, jwks_file = ensure_dev_key(folder / f"{kid}.pem")
    document = json.loads(jwks_file.read_text())
    document["keys"][0]["kid"] = kid
    return key, document


def _cache(issuer: FakeIssuer, clock: Clock) -> JwksCache:
    return JwksCache(issuer.fetch, ttl_s=300, min_refresh_s=30, clock=clock)


async def test_the_set_is_fetched_once_per_ttl(tmp_path: Path) -> None:
    _, one = _jwks(tmp_path, "k1")
    issuer, clock = FakeIssuer(one), Clock()
    cache = _cache(issuer, clock)
    for _ in range(5):
        assert [k.key_id for k in (await cache.key_set("k1")).keys] == ["k1"]
    assert issuer.fetches == 1
    clock.now += 300
    await cache.key_set("k1")
    assert issuer.fetches == 2


async def test_an_unknown_kid_refreshes_at_most_once_per_interval(tmp_path: Path) -> None:
    _, one = _jwks(tmp_path, "k1")
    _, two = _jwks(tmp_path, "k2")
    issuer, clock = FakeIssuer(one, two), Clock()
    cache = _cache(issuer, clock)
    await cache.key_set("k1")
    issuer.rotate()
    for _ in range(50):  # a flood of tokens naming kids the set lacks, within one interval
        await cache.key_set("made-up")
    assert issuer.fetches == 1
    clock.now += 30
    assert "k2" in {k.key_id for k in (await cache.key_set("k2")).keys}
    assert issuer.fetches == 2
    await cache.key_set("k2")  # known now: no fetch
    assert issuer.fetches == 2


async def test_an_outage_keeps_the_last_good_set_and_retries_per_interval(tmp_path: Path) -> None:
    _, one = _jwks(tmp_path, "k1")
    issuer, clock = FakeIssuer(one), Clock()
    cache = _cache(issuer, clock)
    await cache.key_set("k1")
    issuer.down = True
    clock.now += 300  # stale: refetched, fails, the old set stays in use
    assert [k.key_id for k in (await cache.key_set("k1")).keys] == ["k1"]
    for _ in range(10):
        await cache.key_set("k1")
    assert issuer.fetches == 2
    clock.now += 30
    await cache.key_set("k1")
    assert issuer.fetches == 3


async def test_no_set_yet_refuses_and_is_not_ready(tmp_path: Path) -> None:
    _, one = _jwks(tmp_path, "k1")
    issuer, clock = FakeIssuer(one), Clock()
    issuer.down = True
    cache = _cache(issuer, clock)
    assert await cache.ensure() is False
    with pytest.raises(KeysUnavailable):
        await cache.key_set("k1")
    issuer.down = False
    assert await cache.ensure() is False  # within the interval: not asked again
    clock.now += 30
    assert await cache.ensure() is True and cache.loaded


async def test_the_verifier_accepts_a_rotated_key_and_refuses_an_unknown_kid(
    tmp_path: Path,
) -> None:
    old_key, one = _jwks(tmp_path, "k1")
    new_key, two = _jwks(tmp_path, "k2")
    issuer, clock = FakeIssuer(one, two), Clock()
    verifier = TokenVerifier(
        jwks=None, hs256_secret=None, audience=AUD, issuer=None, remote=_cache(issuer, clock)
    )

    def token(key: Any, kid: str) -> str:
        import jwt

        claims = jwt.decode(
            mint(key, sub="s", scopes=["tenants:read"], audience=AUD),
            options={"verify_signature": False},
        )
        return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})

    assert (await verifier.authenticate(token(old_key, "k1"))).sub == "s"
    issuer.rotate()
    clock.now += 30
    assert (await verifier.authenticate(token(new_key, "k2"))).sub == "s"
    with pytest.raises(InvalidToken):
        await verifier.authenticate(token(old_key, "k1"))  # rotated out
    with pytest.raises(InvalidToken):
        await verifier.authenticate(token(new_key, "nobody"))


def _settings(**values: Any) -> Settings:
    return Settings(pg_dsn="postgresql://u:p@127.0.0.1:1/db", **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "allow", "ok"),
    [
        ("https://issuer.example/.well-known/jwks.json", False, True),
        ("http://issuer.example/jwks.json", False, False),
        ("http://issuer.example/jwks.json", True, False),  # the flag is for loopback only
        ("http://127.0.0.1:9000/jwks.json", False, False),
        ("http://127.0.0.1:9000/jwks.json", True, True),
        ("http://localhost/jwks.json", True, True),
        ("ftp://issuer.example/jwks.json", True, False),
    ],
)
def test_the_jwks_url_must_be_https_or_allowed_loopback(url: str, allow: bool, ok: bool) -> None:
    if ok:
        assert _settings(api_jwks_url=url, api_jwks_allow_http_loopback=allow).api_jwks_url == url
    else:
        with pytest.raises(ValueError, match="api_jwks_url"):
            _settings(api_jwks_url=url, api_jwks_allow_http_loopback=allow)


def test_file_and_url_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        _settings(api_jwks_file=tmp_path / "k.json", api_jwks_url="https://issuer.example/j")


def test_no_key_source_stops_the_api_role_at_start() -> None:
    with pytest.raises(SettingsError, match="TENANT_API_JWKS_FILE / TENANT_API_JWKS_URL"):
        build_verifier(_settings())
    remote = build_verifier(_settings(api_jwks_url="https://issuer.example/j")).remote
    assert remote is not None and not remote.loaded  # fetched by the role, not at build time
