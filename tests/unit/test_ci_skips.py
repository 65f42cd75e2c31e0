"""Under CI=true a skipped test fails the run, unless it declares a missing tool (needs_tool)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, body: str, ci: str) -> int:
    test_dir = REPO / "tests" / "unit" / f"_ci_skip_probe_{os.getpid()}"
    test_dir.mkdir()
    try:
        (test_dir / "test_probe.py").write_text(body)
        env = {**os.environ, "CI": ci}
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_dir)],
            cwd=REPO, env=env, capture_output=True, check=False,
        ).returncode
    finally:
        for f in test_dir.iterdir():
            f.unlink()
        test_dir.rmdir()


SKIPPING = "import pytest\n\ndef test_x():\n    pytest.skip('no reason')\n"
DECLARED = (
    "import pytest\n\n@pytest.mark.needs_tool('sshd')\ndef test_x():\n    pytest.skip('no sshd')\n"
)


@pytest.mark.parametrize(("body", "ci", "code"), [
    (SKIPPING, "true", 1),
    (SKIPPING, "", 0),
    (DECLARED, "true", 0),
])
def test_skips_fail_under_ci_unless_declared(tmp_path: Path, body: str, ci: str, code: int) -> None:
    assert _run(tmp_path, body, ci) == code
