"""The suite's conftest fails a run that skips any test (so CI can never pass with silently skipped tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

SKIPPING_TESTS = """
import pytest

def test_runs():
    assert 1 + 1 == 2

def test_skipped():
    pytest.skip("optional thing missing")
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A temporary project whose conftest is this suite's own conftest."""
    monkeypatch.delenv("FEDIOT_ALLOW_SKIP", raising=False)
    pytester.makeconftest(CONFTEST.read_text())
    return pytester


def test_a_run_with_a_skipped_test_fails_with_a_one_line_reason(suite: pytest.Pytester) -> None:
    # Prepare
    suite.makepyfile(test_mixed=SKIPPING_TESTS)
    # Execute: a real pytest process, as CI runs it
    result = suite.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    # Assert
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=1)
    reasons = [line for line in result.outlines if "skipped (first:" in line]
    assert reasons == [
        "FAILED: 1 test(s) skipped (first: test_mixed.py::test_skipped); every test must run "
        "(set FEDIOT_ALLOW_SKIP=1 to allow skips locally)"
    ]


def test_a_module_skipped_at_collection_fails_the_run(suite: pytest.Pytester) -> None:
    # Prepare: what a module-level importorskip of a missing module does
    suite.makepyfile(test_optional='import pytest\npytest.importorskip("no_such_module_xyz")\n')
    suite.makepyfile(test_plain="def test_ok():\n    pass\n")
    # Execute
    result = suite.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    # Assert
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert any("1 test(s) skipped (first: test_optional.py)" in line for line in result.outlines)


def test_skips_pass_when_allowed_and_xfail_or_all_passing_runs_pass(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    suite.makepyfile(test_mixed=SKIPPING_TESTS)
    suite.makepyfile(
        test_clean="import pytest\n\n@pytest.mark.xfail(strict=True)\ndef test_known():\n    assert False\n"
    )
    # Execute
    clean = suite.runpytest_subprocess("-q", "-p", "no:cacheprovider", "test_clean.py")
    monkeypatch.setenv("FEDIOT_ALLOW_SKIP", "1")
    allowed = suite.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    # Assert
    assert clean.ret == pytest.ExitCode.OK
    clean.assert_outcomes(xfailed=1)
    assert allowed.ret == pytest.ExitCode.OK
    allowed.assert_outcomes(passed=1, skipped=1, xfailed=1)
    assert not any("skipped (first:" in line for line in allowed.outlines)
