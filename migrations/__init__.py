"""Versioned SQL migrations shipped with the service.

``control/`` builds the service's own registry schema; ``tenant/`` is the template every tenant
schema is created from and later migrated along. File names are ``NNNN_name.sql``, 1..N, no gaps.
"""

from pathlib import Path

CONTROL_DIR = Path(__file__).parent / "control"
TENANT_DIR = Path(__file__).parent / "tenant"
