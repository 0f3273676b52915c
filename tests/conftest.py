"""Suite-wide test settings; a run with any skipped test fails (``FEDIOT_ALLOW_SKIP=1`` allows skips)."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]

# CI machines are small and shared: a slow example is not a failure (no per-example deadline).
settings.register_profile("fediot", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fediot")

ALLOW_SKIP_ENV = "FEDIOT_ALLOW_SKIP"


class SkipGuard:
    """Count skipped tests and collectors; at the end, a run with any skip exits 1 with a one-line reason.

    An xfailed test (reported as skipped with ``wasxfail``) ran, so it is not counted. Skips are allowed
    only when the environment sets ``FEDIOT_ALLOW_SKIP=1`` (for local use; CI never sets it).
    """

    def __init__(self) -> None:
        self.skipped: list[str] = []

    def _record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped.append(report.nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)

    def message(self) -> str | None:
        """The one-line reason the run fails, or None when nothing was skipped (or skips are allowed)."""
        if not self.skipped or os.environ.get(ALLOW_SKIP_ENV) == "1":
            return None
        return (
            f"FAILED: {len(self.skipped)} test(s) skipped (first: {self.skipped[0]}); every test must run "
            f"(set {ALLOW_SKIP_ENV}=1 to allow skips locally)"
        )

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        message = self.message()
        if message is None:
            return
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if session.config.pluginmanager.get_plugin("terminalreporter") is None:
            sys.stderr.write(message + "\n")

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        message = self.message()
        if message is not None:
            terminalreporter.write_line(message, red=True, bold=True)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipGuard(), "fediot-skip-guard")
