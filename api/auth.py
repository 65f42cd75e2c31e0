"""Bearer tokens: JWTs verified against a JWKS, from a file or fetched from the issuer's URL
(RS256, EdDSA); HS256 only in development.

A token names its client in ``sub`` and its rights in ``scope`` (space-separated, RFC 8693) or
``scp`` (a list). The client becomes the ``actor`` of the events its commands publish.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import jwt

from api.jwks import JwksCache, KeysUnavailable

ASYMMETRIC = ("RS256", "EdDSA")
SCOPES = (
    "tenants:read",
    "tenants:write",
    "tenants:erase",
    "backups:write",
    "backups:restore",
    "migrations:write",
)


@dataclass(frozen=True)
class Principal:
    sub: str
    scopes: frozenset[str]


class InvalidToken(Exception):
    """The token is malformed, badly signed, expired, or not for us."""


class TokenVerifier:
    def __init__(
        self,
        *,
        jwks: jwt.PyJWKSet | None,
        hs256_secret: str | None,
        audience: str,
        issuer: str | None,
        leeway_s: float = 30.0,
        remote: JwksCache | None = None,
    ) -> None:
        self._jwks, self._secret, self._remote = jwks, hs256_secret, remote
        self._audience, self._issuer, self._leeway = audience, issuer, leeway_s

    @property
    def remote(self) -> JwksCache | None:
        """The cache of the issuer's keys, when they come from a URL."""
        return self._remote

    @staticmethod
    def load_jwks(path: Path) -> jwt.PyJWKSet:
        """Read a JWKS file (called once at start-up, before the server accepts requests)."""
        return jwt.PyJWKSet.from_dict(json.loads(path.read_text()))

    async def authenticate(self, token: str) -> Principal:
        """Verify ``token``, fetching the issuer's keys first when they come from a URL."""
        header = _header(token)
        if self._remote is not None and header.get("alg") in ASYMMETRIC:
            try:
                keys = await self._remote.key_set(_kid(header))
            except KeysUnavailable as e:
                raise InvalidToken(str(e)) from None
            return self._verify(token, header, keys)
        return self._verify(token, header, self._jwks)

    def verify(self, token: str) -> Principal:
        """Verify ``token`` against the keys in hand (a JWKS file, the development secret)."""
        return self._verify(token, _header(token), self._jwks)

    def _verify(
        self, token: str, header: dict[str, object], jwks: jwt.PyJWKSet | None
    ) -> Principal:
        alg = header.get("alg")
        key: object
        if jwks is None and self._secret is None and self._remote is None:
            raise InvalidToken("no token keys are configured (TENANT_API_JWKS_FILE or _URL)")
        if alg == "HS256" and self._secret is not None:
            key = self._secret
        elif alg in ASYMMETRIC and jwks is not None:
            key = _key_for(jwks, header.get("kid"), str(alg))
        else:
            raise InvalidToken(f"algorithm {alg!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=[str(alg)],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e)) from e
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 256:
            raise InvalidToken("sub must be a non-empty string")
        return Principal(sub, _scopes(claims))


def _header(token: str) -> dict[str, object]:
    try:
        return dict(jwt.get_unverified_header(token))
    except jwt.PyJWTError as e:
        raise InvalidToken("malformed token") from e


def _kid(header: dict[str, object]) -> str | None:
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
        raise InvalidToken("kid must be a short string")
    return kid


def _key_for(jwks: jwt.PyJWKSet, kid: object, alg: str) -> object:
    keys = [k for k in jwks.keys if kid is None or k.key_id == kid]
    if kid is None and len(keys) != 1:
        raise InvalidToken("token has no kid and the key set has several keys")
    for k in keys:
        if k.algorithm_name in (alg, None) or (alg == "EdDSA" and k.key_type == "OKP"):
            return k.key
    raise InvalidToken(f"no {alg} key with kid {kid!r}")


def _scopes(claims: dict[str, object]) -> frozenset[str]:
    scope, scp = claims.get("scope"), claims.get("scp")
    if isinstance(scope, str):
        return frozenset(scope.split())
    if isinstance(scp, list):
        return frozenset(str(s) for s in scp)
    return frozenset()
