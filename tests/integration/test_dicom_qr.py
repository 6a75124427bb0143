"""Query/Retrieve of the service's own store, with dcmtk's findscu, movescu and getscu
and pynetdicom, study root and patient root: a calling AE sees and retrieves only its
subscriber's images, and C-MOVE sends only to that subscriber's own DICOM nodes."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.association import keep_responses
from medcompute.server.dicomnet.registry import NodeRegistry
from tests import dciodvfy
from tests.dicom_peers import StoreSCP, program, storescu

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CT5N = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                    "98892001", "CT5N")
FILES = sorted(os.path.join(CT5N, f) for f in os.listdir(CT5N))
SERIES_UID = pydicom.dcmread(FILES[0]).SeriesInstanceUID
SOURCES = [Path(f).read_bytes() for f in FILES]


@pytest.fixture(scope="module")
def node(server_thread, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("qr-data")
    registry = NodeRegistry(data_dir)
    for aet, subscriber in (("SCANNER_A", "a"), ("VIEWER_A", "a"), ("VIEWER_B", "b")):
        registry.add_ae_now(aet, subscriber, "127.0.0.1")
    registry.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=1, dicom_port=0,
                          dicom_quiet_seconds=30.0, dicom_complete_on_release=True)
    with server_thread(config) as running:
        done = storescu(running.running.dicom_port, FILES, aet="SCANNER_A")
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 60
        registry = running.running.dicom.registry
        while not [s for s in running.call(registry.list_series("a"))
                   if s.state == "complete"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yield running


def _port(node) -> int:
    return node.running.dicom_port


def _find(node, aet, model=StudyRootQueryRetrieveInformationModelFind, **keys):
    """(status, identifier) of each answer of a C-FIND in ``model`` (study root)."""
    return _find_on(_port(node), aet, model, **keys)


def _find_on(port: int, aet, model, **keys):
    ae = AE(ae_title=aet)
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDCOMPUTE")
    keep_responses(assoc)
    assert assoc.is_established
    query = Dataset()
    for k, v in keys.items():
        setattr(query, k, v)
    try:
        return [(s.Status, i) for s, i in assoc.send_c_find(query, model)]
    finally:
        assoc.release()


def test_find_shows_only_the_callers_subscriber(node):
    mine = _find(node, "VIEWER_A", QueryRetrieveLevel="SERIES", SeriesInstanceUID="",
                 Modality="CT", NumberOfSeriesRelatedInstances="")
    pending = [i for s, i in mine if s == 0xFF00]
    assert [(i.SeriesInstanceUID, int(i.NumberOfSeriesRelatedInstances)) for i in pending] \
        == [(SERIES_UID, 5)]
    assert mine[-1][0] == 0x0000
    assert _find(node, "VIEWER_A", QueryRetrieveLevel="SERIES", SeriesInstanceUID="",
                 Modality="MR")[-1] == (0x0000, None)
    studies = [i for s, i in _find(node, "VIEWER_A", QueryRetrieveLevel="STUDY",
                                   StudyInstanceUID="", StudyDate="19000101-29991231")
               if s == 0xFF00]
    assert [i.StudyInstanceUID for i in studies] == [pydicom.dcmread(FILES[0]).StudyInstanceUID]
    # Another subscriber's viewer sees nothing of it.
    assert _find(node, "VIEWER_B", QueryRetrieveLevel="SERIES",
                 SeriesInstanceUID="") == [(0x0000, None)]
    done = subprocess.run([program("findscu"), "-S", "-aet", "VIEWER_A", "-aec", "MEDCOMPUTE",
                           "-k", "QueryRetrieveLevel=SERIES", "-k", "SeriesInstanceUID",
                           "127.0.0.1", str(_port(node))], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert SERIES_UID in done.stdout + done.stderr


def test_move_to_the_subscribers_node_only(node, tmp_path):
    with StoreSCP(tmp_path / "dest", aet="DESTSCP") as dest:
        node.call(node.running.dicom.pushes.add_node("a", "workstation", "DESTSCP",
                                                     "127.0.0.1", dest.port))
        done = subprocess.run([program("movescu"), "-S", "-aet", "VIEWER_A", "-aec",
                               "MEDCOMPUTE", "-aem", "DESTSCP", "-k",
                               "QueryRetrieveLevel=SERIES", "-k",
                               f"SeriesInstanceUID={SERIES_UID}", "127.0.0.1",
                               str(_port(node))], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        got = {pydicom.dcmread(p).SOPInstanceUID for p in dest.files()}
        assert got == {pydicom.dcmread(f).SOPInstanceUID for f in FILES}
        for moved in dest.files():  # what is served passes the IOD's validator
            assert dciodvfy.new_errors(Path(moved).read_bytes(), SOURCES) == set()
        # Subscriber b may not move a's images, nor send to a's node.
        ae = AE(ae_title="VIEWER_B")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate("127.0.0.1", _port(node), ae_title="MEDCOMPUTE")
        keep_responses(assoc)
        query = Dataset()
        query.QueryRetrieveLevel, query.SeriesInstanceUID = "SERIES", SERIES_UID
        try:
            statuses = [s.Status for s, _ in assoc.send_c_move(
                query, "DESTSCP", StudyRootQueryRetrieveInformationModelMove)]
        finally:
            assoc.release()
        assert statuses == [0xA801]         # move destination unknown


def _getscu(aet: str, args: list[str], out) -> tuple[subprocess.CompletedProcess, list]:
    """dcmtk's getscu calling as ``aet`` into the folder ``out``, emptied first: its run
    and the files it retrieved."""
    for f in out.iterdir():
        f.unlink()
    done = subprocess.run([program("getscu"), "-aet", aet, *args], capture_output=True,
                          text=True, timeout=60)
    return done, list(out.iterdir())


def test_get_returns_only_the_callers_images(node, tmp_path):
    out = tmp_path / "got"
    out.mkdir()
    args = ["-S", "-od", str(out), "-aec", "MEDCOMPUTE", "-k", "QueryRetrieveLevel=SERIES",
            "-k", f"SeriesInstanceUID={SERIES_UID}", "127.0.0.1", str(_port(node))]
    done, got = _getscu("VIEWER_A", args, out)
    assert done.returncode == 0, done.stderr
    assert len(got) == 5
    for retrieved in got:
        assert dciodvfy.new_errors(retrieved.read_bytes(), SOURCES) == set()
    assert _getscu("VIEWER_B", args, out)[1] == []


def _find_patient_root(node, aet, **keys):
    return _find(node, aet, PatientRootQueryRetrieveInformationModelFind, **keys)


def test_patient_root_queries_and_retrieves(node, tmp_path):
    patient = str(pydicom.dcmread(FILES[0]).PatientID)
    mine = _find_patient_root(node, "VIEWER_A", QueryRetrieveLevel="PATIENT", PatientID="",
                              NumberOfPatientRelatedStudies="")
    pending = [i for s, i in mine if s == 0xFF00]
    assert [(i.PatientID, int(i.NumberOfPatientRelatedStudies)) for i in pending] == \
        [(patient, 1)]
    assert mine[-1][0] == 0x0000
    # The studies of that patient, then another subscriber's viewer: nothing.
    studies = [i for s, i in _find_patient_root(node, "VIEWER_A", QueryRetrieveLevel="STUDY",
                                                PatientID=patient, StudyInstanceUID="")
               if s == 0xFF00]
    assert [i.StudyInstanceUID for i in studies] == [pydicom.dcmread(FILES[0]).StudyInstanceUID]
    assert _find_patient_root(node, "VIEWER_B", QueryRetrieveLevel="PATIENT",
                              PatientID="") == [(0x0000, None)]
    # The PATIENT level is not part of the study root model: identifier does not match.
    assert _find(node, "VIEWER_A", QueryRetrieveLevel="PATIENT", PatientID="")[-1][0] == \
        0xA900
    # dcmtk's findscu and getscu with the patient root model (-P).
    done = subprocess.run([program("findscu"), "-P", "-aet", "VIEWER_A", "-aec", "MEDCOMPUTE",
                           "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID",
                           "127.0.0.1", str(_port(node))], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert patient in done.stdout + done.stderr
    out = tmp_path / "got"
    out.mkdir()
    args = ["-P", "-od", str(out), "-aec", "MEDCOMPUTE", "-k", "QueryRetrieveLevel=PATIENT",
            "-k", f"PatientID={patient}", "127.0.0.1", str(_port(node))]
    done, got = _getscu("VIEWER_A", args, out)
    assert done.returncode == 0, done.stderr
    assert {pydicom.dcmread(p).SOPInstanceUID for p in got} >= \
        {pydicom.dcmread(f).SOPInstanceUID for f in FILES}
    assert _getscu("VIEWER_B", args, out)[1] == []


def _changed_ct(patient: str, **changes) -> Dataset:
    from pydicom.uid import generate_uid

    from medcompute.server.dicom.volume import quiet_pydicom

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.PatientID = generate_uid(), generate_uid(), \
        patient
    with quiet_pydicom():
        for keyword, value in changes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(("changes", "attribute"), [
    ({"SeriesInstanceUID": None}, "SeriesInstanceUID"),
    ({"StudyInstanceUID": None}, "StudyInstanceUID"),
    ({"PixelSpacing": [-1, 0]}, "PixelSpacing"),
    ({"ImageOrientationPatient": [0] * 6}, "ImageOrientationPatient"),
])
def test_an_instance_the_validator_refuses_is_not_stored_and_queries_go_on(node, changes,
                                                                           attribute):
    """Refused with a DICOM failure status naming the attribute, nothing kept; the
    subscriber's universal STUDY and PATIENT C-FINDs still answer as before."""
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom.sop_class import CTImageStorage

    from medcompute.server.storage.images import FindFilter

    patient = f"P-REFUSED-{attribute}"
    ae = AE(ae_title="SCANNER_A")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", _port(node), ae_title="MEDCOMPUTE")
    keep_responses(assoc)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(_changed_ct(patient, **changes))
    finally:
        assoc.release()
    assert status.Status == 0xC000                      # cannot understand
    assert str(status.ErrorComment).startswith(attribute)
    found, _ = node.call(node.running.store.find(FindFilter(patient_id=patient), owner="a"))
    assert found == []
    study_uid = pydicom.dcmread(FILES[0]).StudyInstanceUID
    studies = _find(node, "VIEWER_A", QueryRetrieveLevel="STUDY", StudyInstanceUID="")
    assert studies[-1] == (0x0000, None)
    assert [i.StudyInstanceUID for s, i in studies if s == 0xFF00] == [study_uid]
    patients = _find(node, "VIEWER_A", PatientRootQueryRetrieveInformationModelFind,
                     QueryRetrieveLevel="PATIENT", PatientID="")
    assert patients[-1] == (0x0000, None)
    assert [i.PatientID for s, i in patients if s == 0xFF00] == \
        [pydicom.dcmread(FILES[0]).PatientID]


def _patient_data() -> tuple[str, ...]:
    ds = pydicom.dcmread(FILES[0])
    return str(ds.PatientID), str(ds.PatientName), str(ds.PatientName).split("^")[0]


def test_no_patient_data_in_the_log_of_queries_and_retrievals_at_debug(node, tmp_path,
                                                                        caplog):
    """pynetdicom logs C-FIND/C-GET identifiers element by element; none of their patient
    attributes reaches a log record, at any level."""
    pid, name, family = _patient_data()
    out = tmp_path / "got"
    out.mkdir()
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="pynetdicom"):
        found = _find_patient_root(node, "VIEWER_A", QueryRetrieveLevel="PATIENT",
                                   PatientID=pid, PatientName=f"{family}*",
                                   PatientBirthDate="")
        done, got = _getscu("VIEWER_A", ["-P", "-od", str(out), "-aec", "MEDCOMPUTE", "-k",
                                         "QueryRetrieveLevel=PATIENT", "-k",
                                         f"PatientID={pid}", "127.0.0.1",
                                         str(_port(node))], out)
    assert [str(i.PatientID) for s, i in found if s == 0xFF00] == [pid]
    assert done.returncode == 0 and len(got) == 5
    text = caplog.text
    assert "pynetdicom" in text and "Find SCP" in text       # it did log the query
    for secret in (pid, name, family):
        assert secret not in text, secret


def test_the_dask_workers_redact_their_log_too(node):
    """Every worker of the embedded cluster runs the same record factory (its preload)."""
    import logging as worker_logging

    def redacts() -> bool:
        return getattr(worker_logging.getLogRecordFactory(), "redacts_patient_data", False)

    async def ask():
        return await node.running.dispatcher.client.run(redacts)

    answers = node.call(ask())
    assert answers and all(answers.values()), answers


def test_no_patient_data_in_the_log_of_a_serve_process_at_debug(tmp_path):
    """The whole log of `medcompute serve --log-level debug` (its stderr: the server, its
    threads and its Dask workers) after a C-STORE, C-FIND and C-GET of a patient."""
    from tests.dicom_peers import free_port
    from tests.served import Served

    data = tmp_path / "data"
    registry = NodeRegistry(data)
    registry.add_ae_now("SCANNER_A", "local", "127.0.0.1")
    registry.close()
    port = free_port()
    log = tmp_path / "serve.log"
    served = Served(data, log, "--dicom-port", str(port), "--log-level", "debug",
                    "--complete-on-release")
    pid, name, family = _patient_data()
    out = tmp_path / "got"
    out.mkdir()
    try:
        done = storescu(port, FILES[:2], aet="SCANNER_A")
        assert done.returncode == 0, done.stderr
        found = _find_on(port, "SCANNER_A", PatientRootQueryRetrieveInformationModelFind,
                         QueryRetrieveLevel="PATIENT", PatientID=pid,
                         PatientName=f"{family}*")
        assert [str(i.PatientID) for s, i in found if s == 0xFF00] == [pid]
        _getscu("SCANNER_A", ["-P", "-od", str(out), "-aec", "MEDCOMPUTE", "-k",
                              "QueryRetrieveLevel=PATIENT", "-k", f"PatientID={pid}",
                              "127.0.0.1", str(port)], out)
    finally:
        served.stop()
    text = log.read_text()
    assert "DEBUG" in text and "pynetdicom" in text              # it did log, verbosely
    for secret in (pid, name, family):
        assert secret not in text, secret
