"""The image store's refusals of what a raw array has not got (store/images.py), against a
real store (SQLite catalog, blob files; worker functions in threads): DICOM files to send,
and a study to belong to."""

from __future__ import annotations

import numpy as np
import pytest

from medcompute.server.errors import FailedPrecondition, InvalidArgument
from medcompute.server.store.retrieval import retrieve
from tests import store_helpers as H

pytestmark = pytest.mark.timeout(120)

VOL = np.arange(4 * 8 * 8, dtype=np.int16).reshape(4, 8, 8)


async def _put_raw(store):
    record, _, _ = await H.register(store, H.raw_descriptor(VOL),
                                    H.stream(H.payloads(VOL.tobytes())), owner="alice")
    return record


def test_the_dicom_files_of_a_raw_array_are_refused(tmp_path):
    async def body(store):
        record = await _put_raw(store)
        with pytest.raises(InvalidArgument) as info:
            await retrieve(store, record.id, owner="alice", fmt="dicom", coder=H.coder())
        assert info.value.field == "format"
        assert info.value.message == ("this image has no DICOM files (it was registered as a "
                                      "raw array, or derived from one); ask for the voxels")
        voxels = await retrieve(store, record.id, owner="alice", fmt="voxels", coder=H.coder())
        await voxels.payloads.aclose()
        return voxels.shape
    assert H.with_store(tmp_path / "data", body) == VOL.shape


def test_the_study_of_a_raw_array_without_one_is_refused(tmp_path):
    async def body(store):
        record = await _put_raw(store)
        with pytest.raises(FailedPrecondition) as info:
            await store.study_of("alice", record.id, "")
        assert info.value.field == "image_id"
        assert info.value.message == ("this image has no StudyInstanceUID (registered as a raw "
                                      "array without one); it belongs to no study")
        return True
    assert H.with_store(tmp_path / "data", body)
