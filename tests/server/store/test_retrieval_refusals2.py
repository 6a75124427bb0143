"""Get's refusal of a resolution level of the original files (store/retrieval.py), against a
real store (SQLite catalog, blob files, worker functions in threads): levels are cut from a
compressed version, so the call must name one."""

from __future__ import annotations

import pytest

from medcompute.server.errors import InvalidArgument
from medcompute.server.store.retrieval import retrieve
from tests import store_helpers as H

pytestmark = pytest.mark.timeout(120)


def test_a_resolution_level_of_the_original_is_refused(tmp_path):
    async def body(store):
        parts = [H.data_of("CT_small.dcm")]
        ct, _, _ = await H.register(store, H.dicom_descriptor(parts),
                                    H.stream(H.payloads(b"".join(parts))), owner="alice")
        for fmt in ("", "dicom"):
            with pytest.raises(InvalidArgument) as info:
                await retrieve(store, ct.id, owner="alice", fmt=fmt, level=1, coder=H.coder())
            assert info.value.field == "resolution_level"
            assert info.value.message == ("resolution levels are served from a compressed "
                                          "version; name one in version")
        assert store.tiers.reads == {"hot": 0, "cold": 0}       # nothing was read
        return True
    assert H.with_store(tmp_path / "data", body)
