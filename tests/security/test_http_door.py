"""The HTTP door's security: TLS with the server's own certificate, the refusal to serve
HTTP on a non-loopback address without TLS and keys, CORS only for the origins named,
and a taken port refused naming the option."""

from __future__ import annotations

import asyncio
import socket

import pytest
import requests

from medcompute.server.app import check_address
from medcompute.server.config import ServerConfig
from medcompute.server.dicomweb.listener import HttpListener
from medcompute.server.errors import FailedPrecondition

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_tls_with_the_servers_certificate_and_cors(tmp_path, pki, server_thread):
    cert = pki.issue("http-server", "medcompute", server=True)
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, workers=1, gpu_workers=0,
                          tls_cert=cert.cert, tls_key=cert.key, http_port=0,
                          http_cors=("https://viewer.example.org",))
    with server_thread(config) as server:
        url = f"https://localhost:{server.running.http_port}/dicomweb/studies"
        answer = requests.get(url, verify=str(pki.ca.cert), timeout=30,
                              headers={"Origin": "https://viewer.example.org"})
        assert answer.status_code == 200 and answer.json() == []
        assert answer.headers["Access-Control-Allow-Origin"] == "https://viewer.example.org"
        other = requests.get(url, verify=str(pki.ca.cert), timeout=30,
                             headers={"Origin": "https://elsewhere.example.org"})
        assert "Access-Control-Allow-Origin" not in other.headers
        preflight = requests.options(url, verify=str(pki.ca.cert), timeout=30, headers={
            "Origin": "https://viewer.example.org", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url.replace("https:", "http:"), timeout=30)
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, timeout=30)        # a certificate the caller does not trust


@pytest.mark.parametrize("changes", [{}, {"tls_cert": "c.pem", "tls_key": "k.pem"},
                                     {"require_keys": True}])
def test_non_loopback_http_needs_tls_and_keys(tmp_path, changes):
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, http_port=8080,
                          http_address="0.0.0.0", **changes)
    with pytest.raises(FailedPrecondition, match="refusing to serve HTTP on 0.0.0.0") as err:
        check_address(config)
    assert err.value.field == "--http-address"
    check_address(ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, http_port=8080,
                               http_address="0.0.0.0", insecure=True))


def test_a_taken_port_is_refused_naming_the_option():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listener = HttpListener(None, "127.0.0.1", taken.getsockname()[1])
        with pytest.raises(FailedPrecondition) as err:
            asyncio.run(listener.start())
        assert err.value.field == "--http-port"
        asyncio.run(listener.stop())
