"""Get's refusal of a resolution level a version has not got (store/versions.py), against a
real store (SQLite catalog, blob files, worker functions in threads) and pydicom's CT test
file (128 x 128): its lossless JPEG 2000 version has the levels the encoder made."""

from __future__ import annotations

import pytest

from medcompute.server.errors import InvalidArgument
from medcompute.server.store.retrieval import retrieve
from tests import store_helpers as H

pytestmark = pytest.mark.timeout(120)


def test_a_level_past_the_versions_last_is_refused(tmp_path):
    async def body(store):
        parts = [H.data_of("CT_small.dcm")]
        ct, _, _ = await H.register(store, H.dicom_descriptor(parts),
                                    H.stream(H.payloads(b"".join(parts))), owner="alice")
        made = await retrieve(store, ct.id, owner="alice", version="lossless", coder=H.coder())
        await made.payloads.aclose()
        last = made.version.resolutions - 1
        top = await retrieve(store, ct.id, owner="alice", version="lossless", level=last,
                             coder=H.coder())
        await top.payloads.aclose()
        with pytest.raises(InvalidArgument) as info:
            await retrieve(store, ct.id, owner="alice", version="lossless", level=last + 1,
                           coder=H.coder())
        assert info.value.field == "resolution_level"
        return last, info.value.message
    last, message = H.with_store(tmp_path / "data", body)
    assert last == 5                   # 128 -> 64 -> 32 -> 16 -> 8 -> 4 pixels
    assert message == "this version has resolution levels 0 to 5; got 6"
