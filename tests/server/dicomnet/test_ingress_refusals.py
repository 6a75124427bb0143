"""The refusal of dicom/ingress.py a received instance can meet before the store: files
larger than the server's image limit."""

from __future__ import annotations

import pytest

from medcompute.server.dicomnet.ingress import dicom_image
from medcompute.server.errors import ResourceExhausted


def test_received_files_over_the_image_limit_are_resource_exhausted():
    with pytest.raises(ResourceExhausted) as caught:
        dicom_image([700, 400], max_bytes=1000)
    assert caught.value.field == "header.image.file_sizes"
    assert caught.value.message == "the files have 1100 bytes; this server accepts at most 1000"
    assert dicom_image([600, 400], max_bytes=1000).file_sizes == (600, 400)
