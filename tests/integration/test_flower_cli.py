"""The deployment commands of the ``fediot`` CLI: errors keep their brackets (no Rich markup eaten)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fediot.cli import main

pytestmark = pytest.mark.flower


def test_error_message_with_brackets_is_printed_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a certificate folder whose name looks like Rich markup, and no certificates in it
    folder = tmp_path / "certs[flower]"
    folder.mkdir()
    monkeypatch.setattr(sys, "argv", ["fediot", "server", "--certs", str(folder)])
    # Execute
    with pytest.raises(SystemExit) as exit_info:
        main()
    # Assert
    err = "".join(capsys.readouterr().err.split())  # Rich may wrap long lines anywhere
    assert exit_info.value.code == 1
    assert "certs[flower]/ca.crtnotfound" in err
    assert "".join(f"fediot certs --out {folder}".split()) in err
