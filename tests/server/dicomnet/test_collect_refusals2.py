"""Collecting from a source the subscriber has not registered (dicomnet/collect.py), through
the collector the Collect call uses: NOT_FOUND naming the source field, before anything is
asked of a PACS. Another subscriber's source of that name is not seen."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.server.dicomnet.collect import Collector, Query, SourceBook
from medcompute.server.errors import NotFound

pytestmark = pytest.mark.timeout(60)

UNKNOWN = "no source 'pacs' (register it with `medcompute dicom source add`)"


def test_collecting_from_a_source_not_registered_is_not_found(tmp_path):
    book = SourceBook(tmp_path)
    try:
        # Another subscriber's source of that name; port 9 (discard): never dialled.
        asyncio.run(book.add("clinic-b", "pacs", "PACS", "127.0.0.1", 9, "move"))
        collector = Collector(book, ingress=None, retrievals=None, own_ae="MEDCOMPUTE")
        with pytest.raises(NotFound) as caught:
            asyncio.run(collector.collect("clinic-a", "pacs", Query(modality="CT")))
        assert caught.value.field == "source"
        assert caught.value.message == UNKNOWN
        assert [s.name for s in asyncio.run(book.sources("clinic-b"))] == ["pacs"]
        assert asyncio.run(book.sources("clinic-a")) == []
    finally:
        book.close()
