"""A stored image named to a processing service built without an image store
(jobs/derived.py): UNAVAILABLE, not an AttributeError."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from medcompute.server.errors import Unavailable
from medcompute.server.jobs import derived
from medcompute.server.storage.spool import ExpectedImage


def test_a_stored_image_without_an_image_store_is_unavailable():
    inline = ExpectedImage("input.inline", "raw", 128, (8, 8), np.dtype("<u2"))
    assert asyncio.run(derived.resolve(None, [inline], owner="s")) == [inline]
    stored = ExpectedImage("operands[0].image_id", "stored", 0, stored="3f2a9c")
    with pytest.raises(Unavailable) as info:
        asyncio.run(derived.resolve(None, [inline, stored], owner="s"))
    assert info.value.field is None
    assert info.value.message == "this server has no image store"
