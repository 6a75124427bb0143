"""TLS, mTLS with certificates made in the test, keys bound to a client certificate, and the
refusal to listen on a non-loopback address without them."""

import logging

import grpc
import numpy as np
import pytest

from medcompute.client import Client, ServiceError
from medcompute.server.app import check_address
from medcompute.server.config import ServerConfig
from medcompute.server.errors import FailedPrecondition
from medcompute.server.storage.keys import KeyStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

IMAGE = np.ones((4, 4), np.float32)


def _works(address, **kw) -> grpc.StatusCode:
    with Client(address, timeout=20, **kw) as c:
        try:
            c.process(IMAGE, ["gaussian:sigma=1"])
        except ServiceError as exc:
            return exc.code
    return grpc.StatusCode.OK


def test_tls(tmp_path, pki, server_thread):
    server_cert = pki.issue("server", "medcompute", server=True)
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, workers=1, gpu_workers=0,
                          tls_cert=server_cert.cert, tls_key=server_cert.key)
    with server_thread(config) as server:
        address = f"localhost:{server.running.port}"
        assert _works(address, tls_ca=pki.ca.cert) == grpc.StatusCode.OK
        assert _works(address) == grpc.StatusCode.UNAVAILABLE      # plaintext to a TLS port
        other = type(pki)(tmp_path / "other-ca")
        assert _works(address, tls_ca=other.ca.cert) == grpc.StatusCode.UNAVAILABLE


def test_mtls_and_keys_bound_to_a_certificate(tmp_path, pki, server_thread):
    server_cert = pki.issue("server2", "medcompute", server=True)
    scanner = pki.issue("scanner", "scanner-1")
    intruder = pki.issue("intruder", "scanner-2")
    keys = KeyStore(tmp_path)
    _, bound = keys.create("scanner-site", "process", certificate_sha256=scanner.sha256)
    _, loose = keys.create("other-site", "process")
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, workers=1, gpu_workers=0,
                          tls_cert=server_cert.cert, tls_key=server_cert.key,
                          client_ca=pki.ca.cert, require_keys=True)
    with server_thread(config) as server:
        address = f"localhost:{server.running.port}"
        tls = {"tls_ca": pki.ca.cert}
        as_scanner = {**tls, "tls_cert": scanner.cert, "tls_key": scanner.key}
        as_intruder = {**tls, "tls_cert": intruder.cert, "tls_key": intruder.key}
        # No client certificate: the handshake fails.
        assert _works(address, api_key=loose, **tls) == grpc.StatusCode.UNAVAILABLE
        assert _works(address, api_key=loose, **as_scanner) == grpc.StatusCode.OK
        assert _works(address, api_key=bound, **as_scanner) == grpc.StatusCode.OK
        # The bound key over another (valid) certificate is refused.
        assert _works(address, api_key=bound, **as_intruder) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("changes", [{}, {"tls_cert": "c.pem", "tls_key": "k.pem"},
                                     {"require_keys": True}])
def test_non_loopback_needs_tls_and_keys(tmp_path, changes):
    config = ServerConfig(address="0.0.0.0:0", data_dir=tmp_path, **changes)
    with pytest.raises(FailedPrecondition, match="refusing to listen on 0.0.0.0"):
        check_address(config)


def test_non_loopback_with_tls_and_keys_or_insecure(tmp_path, caplog):
    check_address(ServerConfig(address="10.1.2.3:50051", data_dir=tmp_path, tls_cert="c",
                               tls_key="k", require_keys=True))
    with caplog.at_level(logging.WARNING):
        check_address(ServerConfig(address="0.0.0.0:50051", data_dir=tmp_path, insecure=True))
    assert "INSECURE" in caplog.text
    for loopback in ("127.0.0.1:0", "localhost:0", "[::1]:0"):
        check_address(ServerConfig(address=loopback, data_dir=tmp_path))


def test_half_a_tls_configuration_is_refused(tmp_path):
    with pytest.raises(FailedPrecondition, match="both"):
        check_address(ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, tls_cert="c"))
    with pytest.raises(FailedPrecondition, match="client-ca"):
        check_address(ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, client_ca="ca"))


def test_the_embedded_cluster_listens_on_loopback_only(server):
    async def addresses():
        d = server.running.dispatcher
        info = await d.client.scheduler.identity()
        return d.scheduler_address, list(info["workers"]), [
            w.get("nanny") for w in info["workers"].values()]

    scheduler, workers, nannies = server.call(addresses())
    for address in [scheduler, *workers, *nannies]:
        assert address.startswith("tcp://127.0.0.1:"), address
