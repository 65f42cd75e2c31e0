"""The committed OpenAPI document is the app's, and every /v1 route asks for a bearer token."""

import json
from pathlib import Path

from api.app import create_app

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_docs_openapi_json_is_current() -> None:
    generated = create_app(None).openapi()
    assert generated["openapi"].startswith("3.1")
    assert json.loads(OPENAPI_FILE.read_text()) == generated, (
        "run .venv/bin/python scripts/export_contracts.py"
    )


def test_every_v1_operation_needs_a_bearer_token_and_documents_problems() -> None:
    paths = create_app(None).openapi()["paths"]
    v1 = [(p, m, op) for p, ops in paths.items() if p.startswith("/v1") for m, op in ops.items()]
    assert len(v1) == 13  # 6 reads, 7 commands
    for path, method, op in v1:
        assert op.get("security") == [{"HTTPBearer": []}], (method, path)
        for status in ("401", "403", "429"):
            content = op["responses"][status]["content"]
            assert "application/problem+json" in content, (method, path, status)


def test_run_all_includes_the_api_role() -> None:
    from runtime.worker import expand_roles

    assert "api" in expand_roles(["all"])
    assert expand_roles(["api"]) == ["api"]
