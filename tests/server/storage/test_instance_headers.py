"""Tests of medcompute.server.storage.instance_headers: the stored instances' DICOM JSON
in the catalog (real SQLite, and PostgreSQL where the session has one)."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.server.storage.instance_headers import InstanceHeaders

pytestmark = pytest.mark.timeout(30)


def test_headers_are_kept_in_file_order_and_written_once(catalog_at):
    headers = InstanceHeaders(catalog_at)
    try:
        assert asyncio.run(headers.get(["img1"])) == {}
        asyncio.run(headers.put("img1", ['{"a":0}']))              # the first file's, first
        asyncio.run(headers.put("img1", ['{"a":"again"}', '{"a":1}', '{"a":2}']))
        asyncio.run(headers.put("img2", ['{"b":0}']))
        got = asyncio.run(headers.get(["img1", "img2", "img3"]))
        # A row is never changed: the second write of the first file's header did nothing.
        assert got == {"img1": ['{"a":0}', '{"a":1}', '{"a":2}'], "img2": ['{"b":0}']}
        assert asyncio.run(headers.get(["img1"], first_only=True)) == {"img1": ['{"a":0}']}
        many = [f"x{k}" for k in range(1200)]                     # more ids than one query
        for k in (0, 700, 1199):
            asyncio.run(headers.put(many[k], [str(k)]))
        assert asyncio.run(headers.get(many)) == {"x0": ["0"], "x700": ["700"],
                                                   "x1199": ["1199"]}
    finally:
        headers.close()
