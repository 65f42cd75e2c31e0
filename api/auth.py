"""Bearer tokens: JWTs verified against a JWKS file (RS256, EdDSA); HS256 only in development.

A token names its client in ``sub`` and its rights in ``scope`` (space-separated, RFC 8693) or
``scp`` (a list). The client becomes the ``actor`` of the events its commands publish.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import jwt

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
    ) -> None:
        self._jwks, self._secret = jwks, hs256_secret
        self._audience, self._issuer, self._leeway = audience, issuer, leeway_s

    @staticmethod
    def load_jwks(path: Path) -> jwt.PyJWKSet:
        """Read a JWKS file (called once at start-up, before the server accepts requests)."""
        return jwt.PyJWKSet.from_dict(json.loads(path.read_text()))

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise InvalidToken("malformed token") from e
        alg = header.get("alg")
        key: object
        if self._jwks is None and self._secret is None:
            raise InvalidToken("no token keys are configured (TENANT_API_JWKS_FILE)")
        if alg == "HS256" and self._secret is not None:
            key = self._secret
        elif alg in ASYMMETRIC and self._jwks is not None:
            key = self._key_for(header.get("kid"), str(alg))
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

    def _key_for(self, kid: object, alg: str) -> object:
        assert self._jwks is not None
        keys = [k for k in self._jwks.keys if kid is None or k.key_id == kid]
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
