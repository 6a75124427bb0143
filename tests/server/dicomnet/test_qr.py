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
