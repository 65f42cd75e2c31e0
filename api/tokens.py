"""Development tokens: an Ed25519 key kept in a local file, its JWKS beside it, and JWTs signed
with it (``tenantctl token``). Production tokens come from the organisation's identity provider;
the API only needs that provider's JWKS."""

import json
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

DEV_KID = "tenantctl-dev"


def ensure_dev_key(key_file: Path) -> tuple[ed25519.Ed25519PrivateKey, Path]:
    """Load the key in ``key_file`` (creating it, mode 0600, if missing); write its public JWKS
    to ``<key_file>.jwks.json``, which is what TENANT_API_JWKS_FILE should name."""
    if key_file.exists():
        loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(loaded, ed25519.Ed25519PrivateKey):
            raise SystemExit(f"{key_file}: not an Ed25519 private key")
        key = loaded
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.touch(mode=0o600)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    jwk |= {"kid": DEV_KID, "alg": "EdDSA", "use": "sig"}
    jwks_file = key_file.with_name(key_file.name + ".jwks.json")
    jwks_file.write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n")
    return key, jwks_file


def mint(
    key: ed25519.Ed25519PrivateKey | str,
    *,
    sub: str,
    scopes: list[str],
    audience: str,
    issuer: str | None = None,
    ttl_s: int = 3600,
) -> str:
    """A signed JWT: EdDSA with a private key, HS256 with a string secret (development)."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": sub,
        "scope": " ".join(scopes),
        "aud": audience,
        "iat": now,
        "exp": now + ttl_s,
    }
    if issuer:
        claims["iss"] = issuer
    if isinstance(key, str):
        return jwt.encode(claims, key, algorithm="HS256")
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": DEV_KID})
