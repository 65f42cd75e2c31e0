"""Under CI a skipped test is a failure: a test that cannot run its check must say why by failing.

The one exception is declared, not guessed: @pytest.mark.needs_tool("sshd") on a test that needs a
tool this machine may lack. A plugin object (one per pytest session), so the rule can be tested
in-process, in milliseconds, on a probe session of its own.
"""

import os

import pytest


class CiSkips:
    def __init__(self) -> None:
        self.undeclared: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail") and "needs_tool" not in report.keywords:
            self.undeclared.append(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if os.environ.get("CI") == "true" and self.undeclared:
            print("\n[CI] skipped tests count as failures (mark needs_tool if a tool is missing):\n  "
                  + "\n  ".join(self.undeclared))
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
