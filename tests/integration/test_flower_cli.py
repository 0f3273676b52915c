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


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["fediot", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


def test_certs_refuses_to_replace_and_adds_keys_under_the_same_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a group-readable umask; a first folder of certificates with 2 node keys
    import os

    from cryptography import x509

    previous = os.umask(0o027)
    try:
        out = tmp_path / "certs"
        assert _cli(monkeypatch, "certs", "--out", str(out), "--nodes", "2") == 0
        ca_before = (out / "ca.crt").read_bytes()
        key_before = (out / "supernode-1.key").read_bytes()
        capsys.readouterr()
        # Execute
        refused = _cli(monkeypatch, "certs", "--out", str(out), "--nodes", "2")
        refused_err = "".join(capsys.readouterr().err.split())
        added = _cli(monkeypatch, "certs", "--out", str(out), "--add-nodes", "2")
        forced = _cli(monkeypatch, "certs", "--out", str(tmp_path / "other"), "--nodes", "1")
        replaced = _cli(monkeypatch, "certs", "--out", str(tmp_path / "other"), "--nodes", "1", "--force")
    finally:
        os.umask(previous)
    # Assert: refused without --force, nothing changed; --add-nodes keeps the CA and numbers on
    assert refused == 1
    assert "refusingtoreplacetheCAandkeys" in refused_err
    assert added == 0
    assert forced == 0
    assert replaced == 0
    assert (out / "ca.crt").read_bytes() == ca_before
    assert (out / "supernode-1.key").read_bytes() == key_before
    assert sorted(p.name for p in out.glob("supernode-*.key")) == [
        f"supernode-{i}.key" for i in range(1, 5)
    ]
    ca = x509.load_pem_x509_certificate(ca_before)
    x509.load_pem_x509_certificate((out / "server.pem").read_bytes()).verify_directly_issued_by(ca)
    # files honour the umask (0o640), private keys stay 0600
    assert (out / "ca.crt").stat().st_mode & 0o777 == 0o640
    assert (out / "supernode-4.pub").stat().st_mode & 0o777 == 0o640
    for key in [out / "ca.key", out / "server.key", *out.glob("supernode-*.key")]:
        assert key.stat().st_mode & 0o777 == 0o600, key


def test_add_nodes_without_a_ca_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    code = _cli(monkeypatch, "certs", "--out", str(tmp_path), "--add-nodes", "1")
    # Assert
    assert code == 1
    assert "ca.crtnotfound" in "".join(capsys.readouterr().err.split())
    assert list(tmp_path.iterdir()) == []


def test_extract_refuses_to_overwrite_its_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a copy of a shipped capture
    import shutil

    src = Path(__file__).resolve().parents[2] / "data" / "ddos_pcaps" / "pkt.TCP.synflood.spoofed.pcap.gz"
    capture = tmp_path / "capture.pcap.gz"
    shutil.copy(src, capture)
    # Execute: --out names the input (through another spelling of the path)
    code = _cli(monkeypatch, "extract", str(capture), "--out", str(tmp_path / "." / "capture.pcap.gz"))
    # Assert
    assert code == 2
    assert "isoneoftheinputcaptures" in "".join(capsys.readouterr().err.split())
    assert capture.read_bytes() == src.read_bytes()
