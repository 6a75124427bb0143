"""DICOMweb on ``serve --http-port``, with an independent client (dicomweb-client) and
plain HTTP for what it cannot send: STOW-RS stores through the DICOM ingress and the
completed series runs the routing rules; QIDO-RS and WADO-RS answer a subscriber's own
images only; bad requests get their 4xx with a body naming what is wrong, store nothing,
and the server serves on."""

from __future__ import annotations

import email
import io
import os
import time

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file

from medcompute.client import Client
from medcompute.proto.v1 import jobs_pb2
from medcompute.server.config import ServerConfig
from medcompute.server.storage.audit import REFUSED_ENTRIES
from medcompute.server.storage.images import FindFilter
from medcompute.server.storage.keys import KeyStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CT5N = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                    "98892001", "CT5N")
FILES = sorted(os.path.join(CT5N, f) for f in os.listdir(CT5N))
FIRST = pydicom.dcmread(FILES[0])
STUDY, SERIES = FIRST.StudyInstanceUID, FIRST.SeriesInstanceUID
SOPS = sorted(pydicom.dcmread(f).SOPInstanceUID for f in FILES)
MAX_BODY = 64 << 10


@pytest.fixture(scope="module")
def web(server_thread, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("dicomweb-data")
    keys = KeyStore(data_dir)
    tokens = {name: keys.create(subscriber, roles)[1] for name, subscriber, roles in (
        ("a", "a", "process,store,receive"), ("b", "b", "process,store,receive"),
        ("c", "c", "process,store,receive"),
        ("reader", "a", "receive"), ("admin", "ops", "admin"))}
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=1, http_port=0,
                          dicom_quiet_seconds=1.0, http_max_body_bytes=MAX_BODY)
    with server_thread(config) as running:
        running.tokens = tokens
        running.url = f"http://127.0.0.1:{running.running.http_port}/dicomweb"
        with Client(running.address, timeout=60, api_key=tokens["admin"]) as admin:
            admin.dicom.create_rule("a", ["gaussian:sigma=1"], label="smooth")
        yield running


def _dw(web, who: str) -> DICOMwebClient:
    return DICOMwebClient(web.url, headers={"Authorization": f"Bearer {web.tokens[who]}"})


def _auth(web, who: str) -> dict:
    return {"Authorization": f"Bearer {web.tokens[who]}"}


def _complete(web, owner: str) -> list:
    registry = web.running.dicom.registry
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = [s for s in web.call(registry.list_series(owner)) if s.state == "complete"]
        if done:
            return done
        time.sleep(0.2)
    pytest.fail("the stored series did not complete")


def _images(web, owner: str) -> int:
    """How many images ``owner`` has stored."""
    return len(web.call(web.running.store.find(FindFilter(), owner=owner,
                                               page_size=1000))[0])


@pytest.fixture(scope="module")
def stored(web):
    """CT5N stored by subscriber a over STOW-RS, its series complete and routed."""
    client = _dw(web, "a")
    answer = client.store_instances([pydicom.dcmread(f) for f in FILES])
    refs = answer.ReferencedSOPSequence
    assert sorted(r.ReferencedSOPInstanceUID for r in refs) == SOPS
    assert "FailedSOPSequence" not in answer
    (series,) = _complete(web, "a")
    return series


def test_stored_series_completes_and_runs_the_routing_rules(web, stored):
    deadline = time.monotonic() + 60
    with Client(web.address, timeout=60, api_key=web.tokens["a"]) as a:
        while time.monotonic() < deadline:
            received = [s for s in a.dicom.received_series() if s.jobs]
            if received:
                break
            time.sleep(0.2)
        (series,) = received
        assert series.calling_ae == "DICOMWEB"
        (job,) = series.jobs
        assert a.wait(job.job_id, timeout=120).state == jobs_pb2.JOB_STATE_SUCCEEDED


def test_qido_studies_series_instances(web, stored):
    client = _dw(web, "a")
    (study,) = client.search_for_studies()
    assert study["0020000D"]["Value"] == [STUDY]
    assert study["00201208"]["Value"] == [len(FILES)]          # instances in the study
    assert study["00080061"]["Value"] == ["CT"]                # modalities in the study
    (series,) = client.search_for_series(STUDY)
    assert series["0020000E"]["Value"] == [SERIES]
    assert series["00201209"]["Value"] == [len(FILES)]
    instances = client.search_for_instances(STUDY, SERIES)
    assert sorted(i["00080018"]["Value"][0] for i in instances) == SOPS
    assert len(client.search_for_instances()) == len(FILES)


@pytest.mark.parametrize(("filters", "found"), [
    ({"PatientName": "Doe*"}, 1), ({"PatientName": "doe*"}, 0),
    ({"PatientName": "D?e^Peter"}, 1), ({"StudyDate": "20000101-20011231"}, 1),
    ({"StudyDate": "20020101-"}, 0), ({"StudyDate": "-20010101"}, 1),
    ({"StudyInstanceUID": f"1.2.3,{STUDY}"}, 1), ({"ModalitiesInStudy": "MR"}, 0),
    ({"00100020": FIRST.PatientID}, 1),
])
def test_qido_matching(web, stored, filters, found):
    assert len(_dw(web, "a").search_for_studies(search_filters=filters)) == found


def test_qido_includefield_limit_offset(web, stored):
    client = _dw(web, "a")
    (study,) = client.search_for_studies(fields=["InstitutionName", "00180050"])
    assert "00080080" in study and "00180050" in study
    # An attribute the files lack, of an ambiguous VR (US or SS): empty, of its first VR.
    instances = client.search_for_instances(STUDY, SERIES, fields=["00280106"])
    assert all(i["00280106"] == {"vr": "US"} for i in instances)
    everything = client.search_for_instances(STUDY, SERIES, fields=["all"])
    assert all("00280030" in i for i in everything)            # PixelSpacing
    more = requests.get(f"{web.url}/studies/{STUDY}/series/{SERIES}/instances",
                        params={"limit": 2}, headers=_auth(web, "a"), timeout=30)
    assert len(more.json()) == 2 and "more results" in more.headers["Warning"]
    everything_at_once = requests.get(f"{web.url}/instances", headers=_auth(web, "a"),
                                      timeout=30)
    assert "Warning" not in everything_at_once.headers
    first = client.search_for_instances(STUDY, SERIES, limit=2)
    rest = client.search_for_instances(STUDY, SERIES, offset=2)
    assert len(first) == 2 and len(rest) == len(FILES) - 2
    assert {i["00080018"]["Value"][0] for i in first + rest} == set(SOPS)


def test_qido_fuzzy_matching_is_off_and_said_so(web, stored):
    answer = requests.get(f"{web.url}/studies", params={"PatientName": "doe*",
                                                        "fuzzymatching": "true"},
                          headers=_auth(web, "a"), timeout=30)
    assert answer.status_code == 200 and answer.json() == []
    assert "fuzzy matching" in answer.headers["Warning"]


@pytest.mark.parametrize(("params", "field"), [
    ({"NoSuchKeyword": "x"}, "NoSuchKeyword"), ({"limit": "-1"}, "limit"),
    ({"StudyDate": "2001-01-01"}, "StudyDate"), ({"includefield": "Nope"}, "includefield"),
    ({"fuzzymatching": "maybe"}, "fuzzymatching"),
])
def test_qido_bad_queries_name_the_key(web, stored, params, field):
    answer = requests.get(f"{web.url}/studies", params=params, headers=_auth(web, "a"),
                          timeout=30)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["field"] == field and error["message"]
    assert field in answer.headers["Warning"]


def test_wado_instances_metadata_frames_rendered_bulk(web, stored):
    client = _dw(web, "a")
    got = client.retrieve_series(STUDY, SERIES)
    assert sorted(ds.SOPInstanceUID for ds in got) == SOPS
    by_sop = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f) for f in FILES}
    for ds in got:
        np.testing.assert_array_equal(ds.pixel_array, by_sop[ds.SOPInstanceUID].pixel_array)
    (one,) = client.retrieve_study(STUDY)[:1]
    assert one.StudyInstanceUID == STUDY
    meta = client.retrieve_series_metadata(STUDY, SERIES)
    assert sorted(m["00080018"]["Value"][0] for m in meta) == SOPS
    assert all("BulkDataURI" in m["7FE00010"] for m in meta)
    sop = SOPS[0]
    (frame,) = client.retrieve_instance_frames(STUDY, SERIES, sop, [1])
    want = by_sop[sop].pixel_array
    np.testing.assert_array_equal(np.frombuffer(frame, "<i2").reshape(want.shape), want)
    png = client.retrieve_instance_rendered(STUDY, SERIES, sop,
                                            media_types=("image/png",),
                                            params={"window": "40,400"})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    jpeg = requests.get(f"{web.url}/studies/{STUDY}/series/{SERIES}/instances/{sop}/"
                        "frames/1/rendered", headers={**_auth(web, "a"), "Accept": "image/*"},
                        timeout=30)
    assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"
    bulk = client.retrieve_bulkdata(meta[0]["7FE00010"]["BulkDataURI"])
    assert len(bulk[0]) == want.nbytes


def test_metadata_and_qido_after_a_restart_read_the_catalog_not_the_files(web, stored):
    from medcompute.server.dicomweb import wado
    from medcompute.server.dicomweb.index import Index

    store = web.running.store
    seen = web.call(Index(store).instances("a", study_uid=STUDY))
    assert sorted(i.sop_uid for i in seen) == SOPS

    def from_file(inst):            # what the stored file says, read here
        path = str(store.present(inst.record.blob("dicom")))
        ds = pydicom.dcmread(io.BytesIO(wado.instance_bytes(path, inst)),
                             stop_before_pixels=True)
        out = ds.to_json_dict(bulk_data_threshold=wado.BULK_THRESHOLD,
                              bulk_data_element_handler=lambda e: f"u/{e.tag:08X}")
        out["7FE00010"] = {"vr": "OW", "BulkDataURI": "u/7FE00010"}
        return ds, out
    truth = {i.sop_uid: from_file(i) for i in seen}
    # A restarted server's index (nothing cached) with every stored file moved away:
    # it answers from the catalog alone, the same attributes as the files.
    fresh = Index(store)
    paths = {str(store.present(i.record.blob("dicom"))) for i in seen}
    for p in paths:
        os.rename(p, p + ".away")
    try:
        series = web.call(fresh.series("a", study_uid=STUDY))
        after = web.call(fresh.instances("a", study_uid=STUDY))
    finally:
        for p in paths:
            os.rename(p + ".away", p)
    assert sorted(i.sop_uid for i in after) == SOPS
    for inst in after:
        ds, meta = truth[inst.sop_uid]
        assert wado.metadata(inst, "u") == meta
        assert str(inst.header.PatientID) == str(ds.PatientID)
        assert inst.header.ImagePositionPatient == ds.ImagePositionPatient
        assert str(inst.header.file_meta.TransferSyntaxUID) == str(
            ds.file_meta.TransferSyntaxUID)
    assert {s.series_uid for s in series} >= {SERIES}
    assert all(s.header.get("StudyInstanceUID") == STUDY for s in series)


def test_isolation_b_never_sees_a(web, stored):
    b = _dw(web, "b")
    assert b.search_for_studies() == [] and b.search_for_instances() == []
    for path in (f"studies/{STUDY}", f"studies/{STUDY}/series/{SERIES}/metadata",
                 f"studies/{STUDY}/series/{SERIES}/instances/{SOPS[0]}/frames/1",
                 f"studies/{STUDY}/series/{SERIES}/instances/{SOPS[0]}/rendered"):
        answer = requests.get(f"{web.url}/{path}", headers=_auth(web, "b"), timeout=30)
        assert answer.status_code == 404, path
        error = answer.json()["error"]
        assert error["field"] in ("study", "series", "instance")
        assert error["message"] == f"no stored {error['field']} with this UID"


def test_keys_and_roles(web, stored):
    answer = requests.get(f"{web.url}/studies", timeout=30)
    assert answer.status_code == 401 and "Bearer" in answer.json()["error"]["message"]
    answer = requests.get(f"{web.url}/studies", timeout=30,
                          headers={"Authorization": "Bearer mc_000000000000_" + "x" * 43})
    assert answer.status_code == 401
    assert len(_dw(web, "reader").search_for_studies()) == 1    # receive may read
    answer = requests.post(f"{web.url}/studies", data=b"", headers={
        **_auth(web, "reader"), "Content-Type": "multipart/related; type=application/dicom; "
        "boundary=x"}, timeout=30)
    assert answer.status_code == 403 and "store" in answer.json()["error"]["message"]


def _body(parts, boundary="b0undary"):
    out = b""
    for kind, data in parts:
        out += f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def _post(web, body, content_type='multipart/related; type="application/dicom"; '
          'boundary=b0undary', path="studies", who="b"):
    return requests.post(f"{web.url}/{path}", data=body, timeout=30,
                         headers={**_auth(web, who), "Content-Type": content_type})


def _bad_instance() -> bytes:
    ds = pydicom.dcmread(FILES[0])
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    del ds.StudyInstanceUID                  # refused by the shared validator
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize(("body", "content_type", "status", "field"), [
    (b"not multipart at all", None, 400, "body"),
    (_body([("application/dicom", b"x")])[:-20], None, 400, "body"),
    (b"{}", "application/json", 415, "Content-Type"),
    (_body([("application/dicom+json", b"[]")]), None, 415, "body.part[0].Content-Type"),
    ('multipart/related; type="application/dicom+xml"; boundary=b0undary', None, 415,
     "Content-Type"),
    (_body([("application/dicom", b"\0" * (MAX_BODY + 1))]), None, 413, "body"),
])
def test_stow_bad_bodies_store_nothing(web, stored, body, content_type, status, field):
    if isinstance(body, str):
        body, content_type = _body([("application/dicom", b"x")]), body
    kwargs = {"content_type": content_type} if content_type else {}
    before = _images(web, "b")
    answer = _post(web, body, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == field
    assert _images(web, "b") == before
    assert len(_dw(web, "a").search_for_studies()) == 1          # still serving


def test_stow_refused_instance_is_listed_and_not_stored(web, stored):
    before = _images(web, "b")
    answer = _post(web, _body([("application/dicom", _bad_instance())]))
    assert answer.status_code == 409
    failed = pydicom.Dataset.from_json(answer.json()).FailedSOPSequence
    assert failed[0].FailureReason == 0xC000
    assert "StudyInstanceUID" in answer.headers["Warning"]
    assert _images(web, "b") == before
    with open(FILES[0], "rb") as f:
        good = f.read()
    answer = _post(web, _body([("application/dicom", good), ("application/dicom",
                                                             _bad_instance())]),
                   path=f"studies/{STUDY}")
    assert answer.status_code == 202
    reply = pydicom.Dataset.from_json(answer.json())
    assert len(reply.ReferencedSOPSequence) == 1 and len(reply.FailedSOPSequence) == 1
    other_study = _post(web, _body([("application/dicom", good)]), path="studies/1.2.3")
    assert other_study.status_code == 409
    assert pydicom.Dataset.from_json(other_study.json()).FailedSOPSequence[0]\
        .FailureReason == 0xA900


@pytest.mark.parametrize(("syntax", "exact"), [("1.2.840.10008.1.2.4.90", True),
                                              ("1.2.840.10008.1.2.4.91", False)])
def test_wado_jpeg2000_versions_by_transfer_syntax(web, syntax, exact):
    """The store's JPEG 2000 versions, by the transfer syntax Accept names (a 128x128
    slice: CT5N's 16x16 ones are too small for the versions' resolution levels)."""
    original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    _dw(web, "c").store_instances([original])
    _complete(web, "c")
    got = _dw(web, "c").retrieve_series(
        original.StudyInstanceUID, original.SeriesInstanceUID,
        media_types=(("application/dicom", syntax),))
    (version,) = got          # the version's file of the one instance (its own SOP UID)
    assert version.SeriesInstanceUID == original.SeriesInstanceUID
    assert version.file_meta.TransferSyntaxUID == syntax
    if exact:
        np.testing.assert_array_equal(version.pixel_array, original.pixel_array)
    else:
        assert version.pixel_array.shape == original.pixel_array.shape


def test_wado_accept_not_offered_is_406(web, stored):
    for accept in ('multipart/related; type="application/dicom"; '
                   'transfer-syntax=1.2.840.10008.1.2.4.50', "application/pdf"):
        answer = requests.get(f"{web.url}/studies/{STUDY}/series/{SERIES}", timeout=30,
                              headers={**_auth(web, "a"), "Accept": accept})
        assert answer.status_code == 406
        assert answer.json()["error"]["field"] == "Accept"
    answer = requests.get(f"{web.url}/studies/{STUDY}/series/{SERIES}/instances/{SOPS[0]}/"
                          "frames/9", headers=_auth(web, "a"), timeout=30)
    assert answer.status_code == 404 and answer.json()["error"]["field"] == "frames"
    answer = requests.get(f"{web.url}/nowhere", headers=_auth(web, "a"), timeout=30)
    assert answer.status_code == 404


def _parts(answer) -> list[pydicom.Dataset]:
    """The DICOM parts of a multipart/related answer (the standard library's parser)."""
    message = email.message_from_bytes(
        f"Content-Type: {answer.headers['Content-Type']}\r\n\r\n".encode() + answer.content)
    return [pydicom.dcmread(io.BytesIO(part.get_payload(decode=True)))
            for part in message.get_payload()]


def test_processing_on_retrieve_runs_a_job_and_reuses_its_result(web, stored):
    url = f"{web.url}/studies/{STUDY}/series/{SERIES}/processed"
    params = [("op", "gaussian:sigma=1"), ("op", "mip:axis=0"), ("device", "cpu")]
    answer = requests.get(url, params=params, headers=_auth(web, "a"), timeout=120)
    assert answer.status_code == 200, answer.text
    (mip,) = _parts(answer)
    assert mip.ImageType[0] == "DERIVED" and mip.StudyInstanceUID == STUDY
    assert mip.SeriesInstanceUID != SERIES
    want = np.stack([pydicom.dcmread(f).pixel_array for f in FILES])
    assert mip.pixel_array.shape == want.shape[1:]
    job = answer.headers["Medcompute-Job"]
    location = answer.headers["Content-Location"]
    assert location.endswith(f"/series/{mip.SeriesInstanceUID}")
    # The derived series is in the store: QIDO finds it, WADO sends it.
    series = _dw(web, "a").search_for_series(STUDY)
    assert {s["0020000E"]["Value"][0] for s in series} == {SERIES, mip.SeriesInstanceUID}
    # The same request again: a new job, answered from the store (the derivation key).
    again = requests.get(url, params=params, timeout=120,
                         headers={**_auth(web, "a"), "Accept": "image/png"})
    assert again.status_code == 200 and again.content[:4] == b"\x89PNG"
    assert again.headers["Content-Location"] == location
    assert again.headers["Medcompute-Job"] != job
    with Client(web.address, timeout=60, api_key=web.tokens["a"]) as a:
        listed = {j.job_id: j for j in a.jobs().jobs}
        assert {job, again.headers["Medcompute-Job"]} <= set(listed)
        usage = a.usage(include_records=True)
        assert {job, again.headers["Medcompute-Job"]} <= {r.job_id for r in usage.records}
    entries = web.call(web.running.guard.audit.alist(action="dicomweb.processed"))
    assert {e.detail for e in entries} >= {f"job {job}"}


@pytest.mark.parametrize(("params", "who", "status", "field"), [
    ([("op", "nope:x=1")], "a", 400, "op[0]"),
    ([("op", "gaussian:sigma=1"), ("op", "gaussian:bogus=1")], "a", 400, "op[1]"),
    ([], "a", 400, "op"),
    ([("op", "gaussian:sigma=-1")], "a", 400, "op[0].gaussian.sigma"),
    ([("op", "mip"), ("colour", "red")], "a", 400, "colour"),
    ([("op", "mip"), ("device", "tpu")], "a", 400, "device"),
    ([("op", "mip")], "c", 404, "series"),            # a's series, another's key
    ([("op", "mip")], "reader", 403, ""),
])
def test_processing_on_retrieve_refusals(web, stored, params, who, status, field):
    answer = requests.get(f"{web.url}/studies/{STUDY}/series/{SERIES}/processed",
                          params=params, headers=_auth(web, who), timeout=120)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"].startswith(field)
    if status == 404:
        assert answer.json()["error"]["message"] == "no stored series with this UID"


@pytest.mark.parametrize(("path", "params", "status", "field"), [
    ("frames/a,b", {}, 400, "frames"),
    ("frames/0", {}, 404, "frames"),
    ("rendered", {"quality": "0"}, 400, "quality"),
    ("rendered", {"zoom": "2"}, 400, "zoom"),
    ("rendered", {"window": "40"}, 400, "window"),
    ("frames/2/rendered", {}, 404, "frames"),
    ("bulk/00540081", {}, 404, "bulk"),          # NumberOfSlices: not in these files
    ("bulk/NotAKeyword", {}, 400, "bulk"),
])
def test_wado_bad_instance_requests_name_the_field(web, stored, path, params, status, field):
    answer = requests.get(f"{web.url}/studies/{STUDY}/series/{SERIES}/instances/{SOPS[0]}/"
                          f"{path}", params=params, headers=_auth(web, "a"), timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == field


def test_a_key_named_otherwise_than_bearer_is_refused(web, stored):
    answer = requests.get(f"{web.url}/studies", timeout=30,
                          headers={"Authorization": f"Basic {web.tokens['a']}"})
    assert answer.status_code == 401
    assert answer.json()["error"]["message"] == ("expected the header 'Authorization: Bearer "
                                                 "<key>'")


def test_a_flood_without_keys_is_counted_not_written_entry_by_entry(web, stored):
    for _ in range(25):
        assert requests.get(f"{web.url}/series", timeout=30).status_code == 401
    entries = web.call(web.running.guard.audit.alist(action="dicomweb.search.series"))
    refused = [e for e in entries if e.outcome == "UNAUTHENTICATED"]
    assert 0 < len(refused) <= REFUSED_ENTRIES
