"""The refusals of app.py's start-up checks (and of the DICOM port's TLS options it checks
there): a server that would start wrongly configured stops first, naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcompute.server.app import check_address
from medcompute.server.config import ServerConfig
from medcompute.server.errors import FailedPrecondition


@pytest.mark.parametrize("options, field, words", [
    (dict(address="8443"), "--address", "expected HOST:PORT, got '8443'"),
    (dict(tls_cert=Path("server.pem")), "--tls-cert", "give both --tls-cert and --tls-key"),
    (dict(tls_key=Path("server.key")), "--tls-cert", "give both --tls-cert and --tls-key"),
    (dict(client_ca=Path("ca.pem")), "--client-ca",
     "--client-ca (mTLS) needs --tls-cert and --tls-key"),
    (dict(dicom_port=11112, dicom_address="0.0.0.0"), "--dicom-address",
     "refusing to accept DICOM on 0.0.0.0 without TLS: give --dicom-tls-cert and "
     "--dicom-tls-key (and --dicom-tls-ca to require callers' certificates), or use "
     "--insecure on a closed imaging network (calling AE titles are still checked against "
     "their hosts)"),
    (dict(dicom_port=11112, dicom_tls_cert="scp.pem"), "--dicom-tls-key",
     "give both --dicom-tls-cert and --dicom-tls-key"),
    (dict(dicom_port=11112, dicom_tls_key="scp.key"), "--dicom-tls-cert",
     "give both --dicom-tls-cert and --dicom-tls-key"),
    (dict(dicom_port=11112, dicom_tls_ca="ca.pem"), "--dicom-tls-ca",
     "--dicom-tls-ca needs --dicom-tls-cert and --dicom-tls-key"),
])
def test_a_wrong_start_up_option_is_refused_naming_it(tmp_path, options, field, words):
    config = ServerConfig(address=options.pop("address", "127.0.0.1:0"), data_dir=tmp_path,
                          **options)
    with pytest.raises(FailedPrecondition) as caught:
        check_address(config)
    assert caught.value.field == field
    assert caught.value.message == words


def test_dicom_on_every_address_is_accepted_with_insecure(tmp_path):
    check_address(ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, dicom_port=11112,
                               dicom_address="0.0.0.0", insecure=True))
