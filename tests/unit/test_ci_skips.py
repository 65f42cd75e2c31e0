"""Under CI=true a skipped test fails the run, unless it declares a missing tool (needs_tool).

Each case runs a probe session in-process with the same plugin the suite registers."""

from pathlib import Path

import pytest

from tests.support.ci_skips import CiSkips

SKIPPING = "import pytest\n\ndef test_x():\n    pytest.skip('no reason')\n"
DECLARED = (
    "import pytest\n\n@pytest.mark.needs_tool('sshd')\ndef test_x():\n    pytest.skip('no sshd')\n"
)
PASSING = "def test_x():\n    assert True\n"


@pytest.mark.parametrize(("body", "ci", "code"), [
    (SKIPPING, "true", 1),
    (SKIPPING, "", 0),
    (DECLARED, "true", 0),
    (PASSING, "true", 0),
])
def test_skips_fail_under_ci_unless_declared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, ci: str, code: int
) -> None:
    monkeypatch.setenv("CI", ci)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "markers =\n    needs_tool: a tool\n"
    )
    probe = tmp_path / f"test_probe_{abs(hash((body, ci)))}.py"
    probe.write_text(body)
    exit_code = pytest.main(
        ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--rootdir", str(tmp_path),
         "-c", str(tmp_path / "pytest.ini"), str(probe)],
        plugins=[CiSkips()],
    )
    assert exit_code == code


def test_the_suite_runs_under_the_rule(pytestconfig: pytest.Config) -> None:
    assert isinstance(pytestconfig.pluginmanager.get_plugin("ci_skips"), CiSkips)
