"""The refusals of dicom/tls.py's check of a peer's TLS settings (a source's or a node's):
each names the PEM field at fault, before anything is kept."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medcompute.server.dicomnet.tls import Tls, check_tls
from medcompute.server.errors import InvalidArgument


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _certificate(key) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "medcompute test client")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


KEY = _key()
CERT = _certificate(KEY)


@pytest.mark.parametrize("tls, field, words", [
    (Tls(server_name="pacs .example"), "server_name", "expected a DNS name or an IP address"),
    (Tls(server_name="p" * 254), "server_name", "expected a DNS name or an IP address"),
    (Tls(ca_pem="not a certificate"), "ca_pem",
     "expected PEM CA certificates (-----BEGIN CERTIFICATE-----): "),
    (Tls(cert_pem=CERT), "client_key_pem",
     "a client certificate needs its private key, and a key its certificate: give both or "
     "neither"),
    (Tls(key_pem=_pem(KEY)), "client_cert_pem",
     "a client certificate needs its private key, and a key its certificate: give both or "
     "neither"),
    (Tls(cert_pem=CERT, key_pem=_pem(_key())), "client_key_pem",
     "expected a PEM certificate chain and the unencrypted PEM private key that belongs to "
     "it: "),
    (Tls(cert_pem="not a certificate", key_pem=_pem(KEY)), "client_cert_pem",
     "expected a PEM certificate chain and the unencrypted PEM private key that belongs to "
     "it: "),
])
def test_tls_settings_that_make_no_client_are_refused(tls, field, words):
    with pytest.raises(InvalidArgument) as caught:
        check_tls(tls, "node.tls")
    assert caught.value.field == f"node.tls.{field}"
    assert caught.value.message.startswith(words), caught.value.message
    assert check_tls(Tls(cert_pem=CERT, key_pem=_pem(KEY)), "node.tls").cert_pem == CERT.strip()
