"""The refusal of dicom/push.py's node book: removing a DICOM node that does not exist
(a long name is not echoed whole)."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.server.dicomnet.push import PushBook
from medcompute.server.errors import NotFound


@pytest.mark.parametrize("name, words", [
    ("viewer", "no DICOM node 'viewer'"),
    ("v" * 500, "no DICOM node '" + "v" * 64 + "'…"),
])
def test_removing_a_node_that_does_not_exist_is_not_found(tmp_path, name, words):
    pushes = PushBook(tmp_path)
    try:
        with pytest.raises(NotFound) as caught:
            asyncio.run(pushes.delete_node("lab-b", name))
        assert caught.value.field == "name" and caught.value.message == words
    finally:
        pushes.close()
