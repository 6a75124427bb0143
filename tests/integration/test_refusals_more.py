"""Refusals that only a served call reaches, with their status code, the field that
prefixes the details and the message: a print on a printer registered with DICOM TLS
(refused before any association is tried, so no printer needs to listen)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from medcompute.client import ServiceError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_printing_on_a_printer_registered_with_tls_is_refused(client, tmp_path):
    from medcompute.client.dicom import tls
    from tests.dicom_tls import Authority

    ca = Authority(tmp_path / "pki")
    client.dicom.register_node("film-over-tls", "PRINTSCP", "127.0.0.1", 2762,
                               tls=tls(ca_pem=ca.ca.read_text()))
    image_id = client.store.register(np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8),
                                     spacing=(2.0, 0.5, 0.5)).image_id
    with pytest.raises(ServiceError) as caught:
        client.printing.print_image(image_id, "film-over-tls", slices=[1])
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details == ("printer: printing over DICOM TLS is not supported yet; "
                                    "register the printer without TLS")
    assert "film-over-tls" not in [j.printer for j in client.printing.jobs()]  # no row kept
