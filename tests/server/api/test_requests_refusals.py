"""Every refusal of api/requests.py: the wire header a caller got wrong, the error class,
the field it names (relative to the request) and what the message says was expected."""

from __future__ import annotations

import pytest

from medcompute.proto.v1 import admin_pb2, image_pb2, jobs_pb2, processing_pb2
from medcompute.server.api.requests import (
    INT_MAX,
    MAX_ID_CHARS,
    check_ranges,
    process_request,
    submit_request,
)
from medcompute.server.errors import InvalidArgument

LIMIT = 1 << 20
INLINE = image_pb2.ImageSource(inline=image_pb2.ImageDescriptor(
    encoding=image_pb2.ENCODING_RAW, shape=[4, 4], dtype=image_pb2.DATA_TYPE_UINT8))
REGION = processing_pb2.SharedRegion(region_id="r1", length=16)


@pytest.mark.parametrize("message, field, words", [
    (processing_pb2.ProcessHeader(retention_seconds=INT_MAX + 1), "retention_seconds",
     f"expected at most {INT_MAX} (2**63 - 1), got {INT_MAX + 1}"),
    (admin_pb2.ListAuditRequest(since=float("inf")), "since", "must be finite, got inf"),
    (admin_pb2.ListAuditRequest(until=float("nan")), "until", "must be finite, got nan"),
    (image_pb2.ImageSource(image_id="f" * (MAX_ID_CHARS + 1)), "image_id",
     f"expected an id of at most {MAX_ID_CHARS} characters, got {MAX_ID_CHARS + 1}"),
])
def test_a_value_out_of_the_servers_range_is_refused_before_use(message, field, words):
    with pytest.raises(InvalidArgument) as caught:
        check_ranges(message)
    assert caught.value.field == field
    assert words in caught.value.message
    assert "f" * (MAX_ID_CHARS + 1) not in caught.value.details   # an id is not echoed


@pytest.mark.parametrize("header, regions, field, words", [
    (processing_pb2.ProcessHeader(input=image_pb2.ImageSource(image_id="")), False,
     "input.image_id",
     "required: the id of a stored image, as Register returned it; got an empty string"),
    (processing_pb2.ProcessHeader(input=image_pb2.ImageSource(version="review")), False,
     "input.version",
     "a version is one of a stored image: give image_id, or leave version empty"),
    (processing_pb2.ProcessHeader(), False, "input",
     "expected an image: set inline (a descriptor; the pixels follow as chunks) or image_id "
     "(a stored image)"),
    (processing_pb2.ProcessHeader(input=INLINE, input_region=processing_pb2.SharedRegion(
        length=16)), True, "input_region.region_id", "required: the id RegisterRegion returned"),
    (processing_pb2.ProcessHeader(input=INLINE, output_region=processing_pb2.SharedRegion(
        region_id="r1")), True, "output_region.length",
     "expected the bytes of the region to use, more than 0"),
    (processing_pb2.ProcessHeader(input=INLINE, input_region=REGION), False, "input_region",
     "shared-memory regions are for Process calls: send the images as chunks"),
    (processing_pb2.ProcessHeader(input=INLINE, output_region=REGION), False, "output_region",
     "shared-memory regions are for Process calls: send the images as chunks"),
    (processing_pb2.ProcessHeader(input=image_pb2.ImageSource(image_id="img1"),
                                  input_region=REGION), True, "input.inline",
     "describe the image in the region with input.inline (a RAW descriptor)"),
])
def test_process_header_refusals(header, regions, field, words):
    with pytest.raises(InvalidArgument) as caught:
        process_request(header, max_image_bytes=LIMIT, regions=regions)
    assert caught.value.field == field
    assert words in caught.value.message


def test_a_submit_without_its_processing_request_is_refused():
    with pytest.raises(InvalidArgument) as caught:
        submit_request(jobs_pb2.SubmitHeader(label="no process"), max_image_bytes=LIMIT)
    assert caught.value.field == "process"
    assert "expected the processing request (pipeline, input, ...)" in caught.value.message
