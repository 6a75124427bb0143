"""The guard's refusal of a key bound to a client certificate (api/guard.py) when the call
comes over another certificate, or over none: certificates made in the test."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medcompute.server.api.guard import Guard
from medcompute.server.config import ServerConfig
from medcompute.server.errors import Unauthenticated
from medcompute.server.storage.audit import AuditLog
from medcompute.server.storage.keys import KeyStore, Principal

pytestmark = pytest.mark.timeout(30)

BOUND = "this API key is bound to a client certificate; connect with that certificate"


def _certificate(cn: str) -> bytes:
    """A self-signed client certificate (PEM), as a scanner site would present."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def _sha256(pem: bytes) -> str:
    return hashlib.sha256(x509.load_pem_x509_certificate(pem).public_bytes(
        serialization.Encoding.DER)).hexdigest()


class _TlsCall:
    """Stand-in for grpc's ServicerContext of a TLS call: its metadata, and the client
    certificate gRPC puts in the auth context (none: a TLS call without one)."""

    def __init__(self, token: str, pem: bytes | None):
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.pem = pem

    def invocation_metadata(self):
        return self.metadata

    def auth_context(self):
        return {"x509_pem_cert": [self.pem]} if self.pem else {}


@pytest.fixture
def guard(tmp_path):
    keys, audit = KeyStore(tmp_path), AuditLog(tmp_path)
    yield Guard(ServerConfig(data_dir=tmp_path), keys, audit)
    keys.close()
    audit.close()


def test_a_bound_key_over_another_certificate_or_none_is_unauthenticated(guard):
    scanner, intruder = _certificate("scanner-1"), _certificate("scanner-2")
    info, token = guard.keys.create("scanner-site", "process",
                                    certificate_sha256=_sha256(scanner))
    assert asyncio.run(guard.authenticate(_TlsCall(token, scanner))) == \
        Principal("scanner-site", frozenset({"process"}), info.key_id)
    for pem in (intruder, None):
        with pytest.raises(Unauthenticated) as caught:
            asyncio.run(guard.authenticate(_TlsCall(token, pem)))
        assert caught.value.field is None           # about the call, not a request field
        assert caught.value.message == BOUND
