"""DICOM TLS (PS3.15 B.1): to the nodes pushed to and the sources collected from, and on
the storage SCP's own port.

A peer's TLS settings are PEM text kept in the catalog (a caller never names a file on
the server's machine): the CA certificates that verify the peer (empty: the machine's
trusted certificates), an optional client certificate and key for a peer that requires
mutual TLS, and the name its certificate must carry (empty: its host). Before each
association the peer's handshake is tried on its own (:func:`probe`), because pynetdicom
reports a failed handshake only in its log: a certificate that does not verify, or a
handshake the peer refuses, is a permanent failure with the TLS reason; a connection
that cannot be opened is transient as without TLS.

The listener (``serve --dicom-tls-cert/--dicom-tls-key [--dicom-tls-ca]``) does each
handshake in the association's own thread with a time limit, so a caller that connects
and never speaks TLS (or speaks plain DICOM) holds neither the accept loop nor a slot
for long; it is logged and closed, and the server goes on serving.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass

from pynetdicom.transport import ThreadedAssociationServer

from medcompute.server.errors import FailedPrecondition, InvalidArgument

__all__ = ["Tls", "check_tls", "client_context", "tls_args", "probe", "dumps", "loads",
           "listener_context", "TlsAssociationServer", "HANDSHAKE_TIMEOUT"]

log = logging.getLogger(__name__)

#: Seconds the listener waits for a caller's TLS handshake.
HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Tls:
    ca_pem: str = ""
    cert_pem: str = ""
    key_pem: str = ""
    server_name: str = ""


def dumps(tls: Tls | None) -> str:
    """The catalog column: empty for plain TCP."""
    if tls is None:
        return ""
    return json.dumps({"ca": tls.ca_pem, "cert": tls.cert_pem, "key": tls.key_pem,
                       "server_name": tls.server_name})


def loads(text: str) -> Tls | None:
    if not text:
        return None
    d = json.loads(text)
    return Tls(d.get("ca", ""), d.get("cert", ""), d.get("key", ""), d.get("server_name", ""))


def _reason(exc: ssl.SSLError) -> str:
    return getattr(exc, "verify_message", "") or exc.reason or str(exc)


def _context(tls: Tls, field: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if tls.ca_pem:
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(cadata=tls.ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise InvalidArgument("expected PEM CA certificates "
                                  f"(-----BEGIN CERTIFICATE-----): {exc}",
                                  f"{field}.ca_pem") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if bool(tls.cert_pem) != bool(tls.key_pem):
        missing = "client_key_pem" if tls.cert_pem else "client_cert_pem"
        raise InvalidArgument("a client certificate needs its private key, and a key its "
                              "certificate: give both or neither", f"{field}.{missing}")
    if tls.cert_pem:
        # The ssl module reads a certificate chain only from files: a private folder,
        # removed at once.
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            for path, text in ((cert, tls.cert_pem), (key, tls.key_pem)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(text)
            try:
                ctx.load_cert_chain(cert, key)
            except ssl.SSLError as exc:
                which = ("client_cert_pem" if "-----BEGIN CERTIFICATE-----" not in
                         tls.cert_pem else "client_key_pem")
                raise InvalidArgument("expected a PEM certificate chain and the unencrypted "
                                      f"PEM private key that belongs to it: {_reason(exc)}",
                                      f"{field}.{which}") from None
    return ctx


def check_tls(tls: Tls, field: str) -> Tls:
    """The settings, stripped, once they make a working client context."""
    name = tls.server_name.strip()
    if any(c.isspace() for c in name) or len(name) > 253:
        raise InvalidArgument("expected a DNS name or an IP address", f"{field}.server_name")
    tls = Tls(tls.ca_pem.strip(), tls.cert_pem.strip(), tls.key_pem.strip(), name)
    _context(tls, field)
    return tls


def client_context(tls: Tls) -> ssl.SSLContext:
    return _context(tls, "tls")


def tls_args(tls: Tls | None, host: str) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's ``tls_args`` for an association to ``host``."""
    if tls is None:
        return None
    return client_context(tls), tls.server_name or host


def probe(host: str, port: int, tls: Tls, timeout: float) -> tuple[bool, str] | None:
    """None when a TLS handshake with host:port succeeds, else (transient, reason)."""
    ctx, name = tls_args(tls, host)
    try:
        with socket.create_connection((host, port), timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=name):
            return None
    except ssl.SSLCertVerificationError as exc:
        return False, f"TLS: the peer's certificate did not verify ({_reason(exc)})"
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return False, ("TLS: the peer closed the connection during the handshake (does it "
                       "speak TLS on this port? does it require a client certificate?)")
    except ssl.SSLError as exc:
        return False, f"TLS: the handshake failed ({_reason(exc)})"
    except ConnectionResetError:
        return False, ("TLS: the peer reset the connection during the handshake (does it "
                       "speak TLS on this port? does it require a client certificate?)")
    except OSError as exc:
        return True, f"unreachable ({exc.strerror or exc})"


def listener_context(cert_file: str, key_file: str, ca_file: str = "") -> ssl.SSLContext:
    """The storage SCP's TLS: its certificate and key; with ``ca_file``, callers must
    present a certificate that it signed."""
    if bool(cert_file) != bool(key_file):
        raise FailedPrecondition("give both --dicom-tls-cert and --dicom-tls-key",
                                 "--dicom-tls-key" if cert_file else "--dicom-tls-cert")
    if ca_file and not cert_file:
        raise FailedPrecondition("--dicom-tls-ca needs --dicom-tls-cert and --dicom-tls-key",
                                 "--dicom-tls-ca")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise FailedPrecondition(f"cannot use {cert_file} and {key_file}: "
                                 f"{getattr(exc, 'strerror', None) or _reason(exc)}",
                                 "--dicom-tls-cert") from None
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise FailedPrecondition(f"cannot use {ca_file}: "
                                     f"{getattr(exc, 'strerror', None) or _reason(exc)}",
                                     "--dicom-tls-ca") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class TlsAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, with the TLS handshake moved from the accept loop
    (where pynetdicom does it, without a time limit) into each association's thread."""

    tls_context: ssl.SSLContext | None = None

    def get_request(self):
        return self.socket.accept()

    def process_request_thread(self, request, client_address) -> None:
        try:
            request.settimeout(HANDSHAKE_TIMEOUT)
            request = self.tls_context.wrap_socket(request, server_side=True)
            request.settimeout(None)
        except (OSError, ValueError) as exc:
            reason = _reason(exc) if isinstance(exc, ssl.SSLError) else (
                "timed out" if isinstance(exc, TimeoutError) else str(exc.strerror or exc))
            log.warning("dicom: TLS handshake from %s failed: %s", client_address[0], reason)
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)
