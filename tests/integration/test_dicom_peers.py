"""The DICOM peers the DICOM-node tests rely on start on free ports with their own
configuration and answer: dcmtk's storescp receives from storescu, Orthanc stores an
instance sent with pynetdicom and shows it in its REST API."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from medcompute.server.dicomnet.association import keep_responses
from tests.dicom_peers import Orthanc, StoreSCP, storescu

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_storescp_receives_from_storescu(tmp_path):
    ct = get_testdata_file("CT_small.dcm")
    with StoreSCP(tmp_path / "in", aet="PEERSCP") as scp:
        done = storescu(scp.port, [ct], called="PEERSCP")
        assert done.returncode == 0, done.stderr
        (received,) = scp.files()
    assert pydicom.dcmread(received).SOPInstanceUID == pydicom.dcmread(ct).SOPInstanceUID


def test_orthanc_stores_what_pynetdicom_sends(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    with Orthanc(tmp_path / "orthanc", aet="PEERPACS") as pacs:
        assert pacs.rest("/system")["DicomAet"] == "PEERPACS"
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(CTImageStorage, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", pacs.dicom_port, ae_title="PEERPACS")
        keep_responses(assoc)
        assert assoc.is_established
        try:
            status = assoc.send_c_store(ds)
        finally:
            assoc.release()
        assert status.Status == 0x0000
        (series,) = pacs.rest("/series?expand")
        assert series["MainDicomTags"]["SeriesInstanceUID"] == ds.SeriesInstanceUID
