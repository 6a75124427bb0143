"""Tests of medcompute.server.dicomnet.ingress: what received files promise the store."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.proto.v1 import image_pb2
from medcompute.server.api.transport import expect_image
from medcompute.server.dicomnet import ingress
from medcompute.server.dicomnet.ingress import dicom_image
from medcompute.server.errors import ResourceExhausted


def test_dicom_image_promises_what_the_equivalent_descriptor_does():
    sizes = [3, 5, 7]
    descriptor = image_pb2.ImageDescriptor(encoding=image_pb2.ENCODING_DICOM,
                                           file_sizes=sizes, size=sum(sizes))
    assert dicom_image(sizes, 15) == expect_image(descriptor, "header.image", max_bytes=15)
    assert dicom_image(iter(sizes), 15).file_sizes == (3, 5, 7)


def test_dicom_image_refuses_what_expect_image_refuses_over_the_limit():
    descriptor = image_pb2.ImageDescriptor(encoding=image_pb2.ENCODING_DICOM, file_sizes=[8, 8])
    with pytest.raises(ResourceExhausted) as expected:
        expect_image(descriptor, "header.image", max_bytes=15)
    with pytest.raises(ResourceExhausted) as got:
        dicom_image([8, 8], 15)
    assert (got.value.message, got.value.field) == (expected.value.message,
                                                    expected.value.field)


def test_files_are_sent_one_after_the_other_in_pieces_of_at_most_a_mebibyte(monkeypatch):
    monkeypatch.setattr(ingress, "_PIECE", 4)

    async def collect():
        return [p async for p in ingress._payloads([b"abcdefghij", b"", b"xyz"])]

    assert asyncio.run(collect()) == [b"abcd", b"efgh", b"ij", b"xyz"]
