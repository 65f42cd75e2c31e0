"""Pure rules of the HTTP API: operation settlement, request fingerprints, tokens, rate headers."""

import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from api.auth import InvalidToken, TokenVerifier
from api.ratelimit import Decision, Limit
from api.tokens import ensure_dev_key, mint
from domain.operations import RESULTS_OF, request_hash, settle

AUD = "tenant-service"


def test_an_operation_is_open_until_every_request_is_answered() -> None:
    assert settle(["a", "b"], {"a": ("TenantMigrated", {"tenant_id": "x"})}) is None
    done = settle(["a"], {"a": ("TenantProvisioned", {"tenant_id": "x", "plan": "free"})})
    assert done is not None and done.error is None
    assert done.result == {"type": "TenantProvisioned", "tenant_id": "x", "plan": "free"}


def test_a_failed_result_is_the_operations_error() -> None:
    done = settle(
        ["a"], {"a": ("TenantSuspendFailed", {"tenant_id": "x", "reason": "unknown_tenant"})}
    )
    assert done is not None and done.result is None
    assert done.error is not None and done.error["code"] == "unknown_tenant"
    many = settle(
        ["a", "b"],
        {"a": ("TenantMigrated", {}), "b": ("TenantMigrationFailed", {"reason": "timeout"})},
    )
    assert many is not None and many.error is not None
    assert (many.error["succeeded"], many.error["failed"]) == (1, 1)


def test_every_command_has_a_success_and_a_failure_result() -> None:
    for success, failure in RESULTS_OF.values():
        assert failure.endswith("Failed") and not success.endswith("Failed")


def test_request_hash_ignores_key_order_but_not_values() -> None:
    one = request_hash("POST", "/v1/tenants", {"tenant_id": "acme", "plan": "pro"})
    assert one == request_hash("POST", "/v1/tenants", {"plan": "pro", "tenant_id": "acme"})
    assert one != request_hash("POST", "/v1/tenants", {"tenant_id": "acme", "plan": "free"})
    assert one != request_hash(
        "POST", "/v1/tenants/acme:erase", {"tenant_id": "acme", "plan": "pro"}
    )


def _verifier(jwks_file: Path | None = None, secret: str | None = None) -> TokenVerifier:
    jwks = TokenVerifier.load_jwks(jwks_file) if jwks_file else None
    return TokenVerifier(jwks=jwks, hs256_secret=secret, audience=AUD, issuer=None)


def test_eddsa_dev_tokens_verify_with_their_scopes(tmp_path: Path) -> None:
    key, jwks_file = ensure_dev_key(tmp_path / "k.pem")
    token = mint(key, sub="alice", scopes=["tenants:read", "backups:write"], audience=AUD)
    principal = _verifier(jwks_file).verify(token)
    assert principal.sub == "alice"
    assert principal.scopes == {"tenants:read", "backups:write"}
    assert (tmp_path / "k.pem").stat().st_mode & 0o077 == 0


def test_rs256_tokens_from_a_jwks_verify(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key())) | {"kid": "r1", "alg": "RS256"}
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    claims = {"sub": "svc", "scp": ["tenants:read"], "aud": AUD, "exp": int(time.time()) + 60}
    token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "r1"})
    assert _verifier(tmp_path / "jwks.json").verify(token).scopes == {"tenants:read"}


@pytest.mark.parametrize(
    "change", ["expired", "audience", "no_sub", "foreign_key", "hs256_without_flag", "none_alg"]
)
def test_bad_tokens_are_refused(tmp_path: Path, change: str) -> None:
    key, jwks_file = ensure_dev_key(tmp_path / "k.pem")
    other, _ = ensure_dev_key(tmp_path / "other.pem")
    now = int(time.time())
    claims: dict[str, object] = {"sub": "a", "scope": "tenants:read", "aud": AUD, "exp": now + 60}
    signer: object = key
    alg = "EdDSA"
    if change == "expired":
        claims["exp"] = now - 3600
    elif change == "audience":
        claims["aud"] = "someone-else"
    elif change == "no_sub":
        del claims["sub"]
    elif change == "foreign_key":
        signer = other
    elif change == "hs256_without_flag":
        signer, alg = "s" * 32, "HS256"
    elif change == "none_alg":
        signer, alg = None, "none"
    token = jwt.encode(claims, signer, algorithm=alg, headers={"kid": "tenantctl-dev"})  # type: ignore[arg-type]
    with pytest.raises(InvalidToken):
        _verifier(jwks_file).verify(token)


def test_hs256_only_with_the_development_secret() -> None:
    token = mint("s" * 32, sub="dev", scopes=["tenants:read"], audience=AUD)
    assert _verifier(secret="s" * 32).verify(token).sub == "dev"
    with pytest.raises(InvalidToken):
        _verifier(secret="t" * 32).verify(token)
    with pytest.raises(InvalidToken):
        _verifier().verify(token)  # no keys at all: fail closed


def test_rate_limit_headers_follow_the_draft() -> None:
    limit = Limit.parse("60/30")
    assert limit == Limit(60, 30)
    allowed = Decision(True, limit, remaining=59, retry_after_s=1, reset_s=1).headers()
    assert allowed["RateLimit-Policy"] == "60;w=30" and "Retry-After" not in allowed
    refused = Decision(False, limit, remaining=0, retry_after_s=2, reset_s=30).headers()
    assert (refused["Retry-After"], refused["RateLimit-Remaining"]) == ("2", "0")
