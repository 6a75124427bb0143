"""STOW-RS bodies parsed alone: what is refused, and with which status and field."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.server.dicomweb.door import HttpError
from medcompute.server.dicomweb.stow import read_parts

KIND = 'multipart/related; type="application/dicom"; boundary=XX'


async def _chunks(data: bytes, size: int = 7):
    for k in range(0, len(data), size):
        yield data[k:k + size]


def _read(content_type, body, limit=1 << 20):
    return asyncio.run(read_parts(content_type, _chunks(body), limit))


def test_parts_in_pieces():
    body = (b"--XX\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n"
            b"--XX\r\n\r\nsecond\r\n--XX--\r\n")
    parts = _read(KIND, body)
    assert [p.data for p in parts] == [b"first", b"second"]
    assert parts[0].content_type == "application/dicom"


@pytest.mark.parametrize(("kind", "body", "status", "field"), [
    ("application/dicom", b"x", 415, "Content-Type"),
    ("", b"x", 415, "Content-Type"),
    ('multipart/related; type="application/dicom+json"; boundary=XX', b"", 415,
     "Content-Type"),
    ('multipart/related; type="application/dicom"', b"", 400, "Content-Type"),
    (KIND, b"garbage", 400, "body"),
    (KIND, b"--XX\r\nContent-Type: application/dicom\r\n\r\ncut", 400, "body"),
    (KIND, b"--XX--\r\n", 400, "body"),
    (KIND, b"--XX\r\nContent-Type: text/plain\r\n\r\nx\r\n--XX--\r\n", 415,
     "body.part[0].Content-Type"),
    (KIND, b"--XX\r\n\r\n" + b"y" * 200 + b"\r\n--XX--\r\n", 413, "body"),
])
def test_refusals(kind, body, status, field):
    with pytest.raises(HttpError) as err:
        _read(kind, body, limit=100)
    assert (err.value.status, err.value.field) == (status, field)
