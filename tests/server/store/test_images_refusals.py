"""Every refusal of the image store's own checks (store/images.py), against a real store
(SQLite catalog, blob files; worker functions in threads): the field each names and its
words."""

from __future__ import annotations

import numpy as np
import pytest

from medcompute.server.errors import InvalidArgument
from medcompute.server.storage.images import FindFilter
from tests import store_helpers as H

pytestmark = pytest.mark.timeout(120)

VOL = np.arange(4 * 8 * 8, dtype=np.int16).reshape(4, 8, 8)


async def _put_raw(store, array, data=None, desc=None, **kw):
    desc = desc or H.raw_descriptor(array)
    data = array.tobytes() if data is None else data
    record, _, _ = await H.register(store, desc, H.stream(H.payloads(data)), owner="alice", **kw)
    return record


async def _refused(coro) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        await coro
    return info.value


def test_registration_refusals(tmp_path):
    async def body(store):
        err = await _refused(_put_raw(store, VOL, metadata={"sop_instance_uids": [
            "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"]}))
        assert err.field == "header.metadata.sop_instance_uids"
        assert err.message == "a raw array is one instance: give at most one UID"
        err = await _refused(_put_raw(store, VOL, data=VOL.tobytes()[:100]))
        assert err.field == "header.image.size"
        assert err.message == "the stream ended after 100 of the 512 bytes declared"
        desc = H.raw_descriptor(VOL)
        desc.crc32 ^= 1
        err = await _refused(_put_raw(store, VOL, desc=desc))
        assert err.field == "header.image.crc32"
        assert err.message.startswith(f"checksum mismatch: declared {desc.crc32:#010x}, "
                                      "the received bytes give ")
        assert await store.catalog.find(FindFilter(), owner="alice", limit=10,
                                        after=None) == ([], "")
        return True
    assert H.with_store(tmp_path / "data", body)


def test_lookup_and_preview_refusals(tmp_path):
    async def body(store):
        record = await _put_raw(store, VOL)
        err = await _refused(store.get("", owner="alice"))
        assert err.field == "image_id"
        assert err.message == ("required: the id of a stored image, as Register returned it; "
                               "got an empty string")
        err = await _refused(store.find(FindFilter(), owner="alice", page_token="not-a-token"))
        assert err.field == "page_token"
        assert err.message.endswith("; pass next_page_token of the previous reply")
        err = await _refused(store.study_of("alice", "", ""))
        assert err.field == "image_id"
        assert err.message == "give image_id (an image of the study) or study_instance_uid"
        err = await _refused(store.preview(record.id, owner="alice", max_size=8))
        assert err.field == "max_size"
        assert err.message == "expected 16 to 1024 pixels, got 8"
        for center, width in ((40.0, None), (40.0, 0.0)):
            err = await _refused(store.preview(record.id, owner="alice", center=center,
                                               width=width))
            assert err.field == "window_width"
            assert err.message == "give both window_center and window_width (> 0), or neither"
        return True
    assert H.with_store(tmp_path / "data", body)
