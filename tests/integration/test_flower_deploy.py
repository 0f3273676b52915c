"""Deployment pieces: generated certificates and keys are valid, and a real SuperLink serves TLS with them."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.flower

deploy = pytest.importorskip("fediot.flower.deploy")
x509 = pytest.importorskip("cryptography.x509")


def test_generated_chain_verifies_and_node_keys_load_like_flower(tmp_path: Path) -> None:
    # Prepare
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

    # Execute
    paths = deploy.generate_certs(tmp_path, num_nodes=2)
    # Assert: server cert signed by the CA, with the loopback SANs
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # node keys: OpenSSH EC keys, as flower-supernode's --auth-supernode-private-key loader requires
    assert len(paths.node_keys) == 2
    for key_path in paths.node_keys:
        private = load_ssh_private_key(key_path.read_bytes(), None)
        public = load_ssh_public_key(key_path.with_suffix(".pub").read_bytes())
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        assert private.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]
        assert key_path.stat().st_mode & 0o077 == 0
    assert paths.ca_key.stat().st_mode & 0o077 == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.network
def test_superlink_serves_tls_with_generated_certificate(tmp_path: Path) -> None:
    # Prepare
    paths = deploy.generate_certs(tmp_path / "certs", num_nodes=0)
    port = _free_port()
    cmd = deploy.superlink_command(paths, host="127.0.0.1", port=port, database=tmp_path / "state.db")
    context = ssl.create_default_context(cafile=str(paths.ca_cert))
    proc = deploy.start_process(cmd, log_path=tmp_path / "superlink.log")
    peer = None
    try:
        # Execute: a TLS handshake that verifies the server against our CA (and its 127.0.0.1 SAN)
        deadline = time.monotonic() + 60
        while peer is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=2) as sock,
                    context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
                ):
                    peer = tls.getpeercert()
            except OSError:
                time.sleep(0.5)
    finally:
        deploy.stop_process(proc)
    # Assert
    log = (tmp_path / "superlink.log").read_text(errors="replace")
    assert peer is not None, log[-3000:]
    assert ("IP Address", "127.0.0.1") in peer["subjectAltName"]
    assert proc.returncode is not None
