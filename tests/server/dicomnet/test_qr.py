"""The Q/R index over the store: a series that stands in several stored images (its
instances one by one, or for a moment after it completed both its volume and its
instances) is counted and retrieved once per instance."""

from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset

from medcompute.server.dicomnet.qr import StoreIndex
from tests.store_helpers import (
    ct_series,
    dicom_descriptor,
    payloads,
    register,
    stream,
    with_store,
)


async def _register(store, parts, owner="a"):
    record, _, _ = await register(store, dicom_descriptor(parts),
                                  stream(payloads(b"".join(parts))), owner=owner)
    return record


def _series_query(uid: str) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.SeriesInstanceUID = uid
    query.NumberOfSeriesRelatedInstances = ""
    return query


def test_a_series_in_its_volume_and_its_instances_counts_each_instance_once(tmp_path):
    parts = ct_series(5)
    uid = pydicom.dcmread(io.BytesIO(parts[0])).SeriesInstanceUID

    async def body(store):
        await _register(store, parts)                     # the completed series' volume
        for part in parts[:2]:                            # instances not yet removed
            await _register(store, [part])
        index = StoreIndex(store)
        (reply,) = await index.find("a", _series_query(uid))
        sent = await index.datasets("a", _series_query(uid))
        return int(reply.NumberOfSeriesRelatedInstances), [ds.SOPInstanceUID for ds in sent]

    count, sent = with_store(tmp_path, body)
    assert count == 5
    assert sorted(sent) == sorted(pydicom.dcmread(io.BytesIO(p)).SOPInstanceUID
                                  for p in parts)


def test_a_series_stored_one_by_one_counts_all_its_instances(tmp_path):
    parts = ct_series(3)
    uid = pydicom.dcmread(io.BytesIO(parts[0])).SeriesInstanceUID

    async def body(store):
        for part in parts:
            await _register(store, [part])
        (reply,) = await StoreIndex(store).find("a", _series_query(uid))
        return int(reply.NumberOfSeriesRelatedInstances)

    assert with_store(tmp_path, body) == 3



def _without(part: bytes, keyword: str) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(part))
    delattr(ds, keyword)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def _query(level: str, **keys) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = level
    query.PatientID = ""
    if level != "PATIENT":
        query.StudyInstanceUID = ""
    if level == "SERIES":
        query.SeriesInstanceUID = ""
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    return query


def test_an_image_an_earlier_version_kept_without_uids_breaks_no_query(tmp_path, monkeypatch):
    """The validator now refuses an instance without its Series or Study Instance UID; an
    image kept before it (here: kept with the validator skipped) is left out of the levels
    that need the UID, and every other image is still found and retrieved."""
    from medcompute.server.dicom import instance

    good = ct_series(1, patient="P-GOOD")[0]
    no_series = _without(ct_series(1, patient="P-OLD")[0], "SeriesInstanceUID")
    no_study = _without(ct_series(1, patient="P-OLD")[0], "StudyInstanceUID")

    async def body(store):
        await _register(store, [good])
        with monkeypatch.context() as m:
            # The workers' check (worker/store_tasks.py reads it at each call).
            m.setattr(instance, "check_instances", lambda *args, **kwargs: None)
            await _register(store, [no_series])
            await _register(store, [no_study])
        index = StoreIndex(store)
        studies = await index.find("a", _query("STUDY"))
        patients = await index.find("a", _query("PATIENT"), patient_root=True)
        series = await index.find("a", _query("SERIES"))
        old = await index.datasets("a", _query("PATIENT", PatientID="P-OLD"))
        return studies, patients, series, old

    studies, patients, series, old = with_store(tmp_path, body)
    good_ds = pydicom.dcmread(io.BytesIO(good))
    # CT_small's study: the good image and the one without a series UID are of it.
    assert [str(r.StudyInstanceUID) for r in studies] == [good_ds.StudyInstanceUID]
    assert sorted(str(r.PatientID) for r in patients) == ["P-GOOD", "P-OLD"]
    no_study_series = pydicom.dcmread(io.BytesIO(no_study)).SeriesInstanceUID
    assert sorted(str(r.SeriesInstanceUID) for r in series) == sorted(
        [good_ds.SeriesInstanceUID, no_study_series])
    assert len(old) == 2            # retrieved by patient: both have their SOP Instance UID


def test_an_answer_carries_the_character_set_of_its_values(tmp_path):
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from tests.store_helpers import encode

    parts = []
    for part in ct_series(1):
        ds = pydicom.dcmread(io.BytesIO(part))
        ds.SpecificCharacterSet = "ISO_IR 100"  # Latin-1 (as CT_small names it)
        ds.PatientName = "Müller^Jörg"
        parts.append(encode(ds))
    plain = [_without(p, "SpecificCharacterSet") for p in ct_series(1, patient="P-PLAIN")]

    async def body(store):
        await _register(store, parts)
        await _register(store, plain)
        index = StoreIndex(store)
        latin = await index.find("a", _query("STUDY", PatientName="", StudyInstanceUID=str(
            pydicom.dcmread(io.BytesIO(parts[0])).StudyInstanceUID)))
        ascii_ = await index.find("a", _query("SERIES", SeriesInstanceUID=str(
            pydicom.dcmread(io.BytesIO(plain[0])).SeriesInstanceUID)))
        return latin, ascii_

    (latin,), (ascii_,) = with_store(tmp_path, body)
    assert latin.SpecificCharacterSet == "ISO_IR 100"
    out = DicomBytesIO()  # encoded as a C-FIND response is, in its own character set
    out.is_little_endian, out.is_implicit_VR = True, True
    write_dataset(out, latin)
    assert "Müller".encode("latin-1") in out.getvalue()
    assert "SpecificCharacterSet" not in ascii_   # the default repertoire: none named
