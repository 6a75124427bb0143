"""Wire headers -> domain requests (api/requests.py), and the domain's error fields placed
in each wire message once."""

from __future__ import annotations

import numpy as np
import pytest

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2, jobs_pb2, operations_pb2, processing_pb2
from medcompute.server.api.requests import (
    BATCH,
    HEADER,
    SUBMIT_BATCH,
    Fields,
    process_header,
    process_request,
    submit_request,
)
from medcompute.server.errors import InvalidArgument

LIMIT = 1 << 20
ARRAY = np.zeros((4, 4), np.uint8)
GAUSSIAN = operations_pb2.Operation(gaussian=operations_pb2.GaussianOp(sigma=[1.0]))


def _inline() -> image_pb2.ImageSource:
    return image_pb2.ImageSource(inline=image_pb2.ImageDescriptor(
        encoding=image_pb2.ENCODING_RAW, shape=ARRAY.shape,
        dtype=wire.dtype_to_proto(ARRAY.dtype), size=ARRAY.nbytes))


def test_a_process_header_becomes_domain_values():
    header = processing_pb2.ProcessHeader(
        pipeline=[GAUSSIAN], input=_inline(),
        operands=[image_pb2.ImageSource(image_id="img1", version="review")],
        device=processing_pb2.DEVICE_GPU, allow_fallback=True,
        output_dtype=image_pb2.DATA_TYPE_UINT16, store_result=True, retention_seconds=5)
    request = process_request(header, max_image_bytes=LIMIT)
    assert request.device == "gpu" and request.allow_fallback
    assert request.output_format == "raw"
    assert request.output_dtype == "uint16" and request.compute_dtype == "float32"
    assert request.input.field == "input.inline" and request.input.shape == (4, 4)
    assert request.operands[0].field == "operands[0].image_id"
    assert request.operands[0].stored == "img1" and request.operands[0].version == "review"
    assert request.store_result and request.retention_seconds == 5
    assert request.names == ["gaussian"]
    back = process_header(request)
    assert back.pipeline[0] == GAUSSIAN and back.device == processing_pb2.DEVICE_GPU
    assert back.output_dtype == image_pb2.DATA_TYPE_UINT16


@pytest.mark.parametrize(("header", "field"), [
    (processing_pb2.ProcessHeader(), "header.input"),
    (processing_pb2.ProcessHeader(input=_inline(), device=9), "header.device"),
    (processing_pb2.ProcessHeader(input=_inline(), output_format=9), "header.output_format"),
    (processing_pb2.ProcessHeader(input=_inline(), compute_dtype=image_pb2.DATA_TYPE_UINT8),
     "header.compute_dtype"),
    (processing_pb2.ProcessHeader(input=image_pb2.ImageSource(image_id="")),
     "header.input.image_id"),
])
def test_wire_mistakes_name_the_header_field(header, field):
    with pytest.raises(InvalidArgument) as err:
        with HEADER.placed():
            process_request(header, max_image_bytes=LIMIT)
    assert err.value.field == field


def test_a_submit_without_process_is_refused():
    with pytest.raises(InvalidArgument) as err:
        with HEADER.placed():
            submit_request(jobs_pb2.SubmitHeader(), max_image_bytes=LIMIT)
    assert err.value.field == "header.process"
    with pytest.raises(InvalidArgument) as err:
        with HEADER.placed():
            submit_request(jobs_pb2.SubmitHeader(process=processing_pb2.ProcessHeader(
                input=_inline(), device=9)), max_image_bytes=LIMIT)
    assert err.value.field == "header.process.device"


@pytest.mark.parametrize(("fields", "field", "placed"), [
    (HEADER, "input.inline.size", "header.input.inline.size"),
    (HEADER, "header.idempotency_key", "header.idempotency_key"),
    (HEADER, "request[2].chunk.operand", "request[2].chunk.operand"),
    (BATCH, "inputs[3].inline.size", "header.inputs[3].inline.size"),
    (BATCH, "pipeline[0].gaussian.sigma", "header.process.pipeline[0].gaussian.sigma"),
    (BATCH, "header.device", "header.process.device"),
    (SUBMIT_BATCH, "inputs[1].size", "header.inputs[1].size"),
    (SUBMIT_BATCH, "idempotency_key", "header.submit.idempotency_key"),
    (SUBMIT_BATCH, "process.pipeline", "header.submit.process.pipeline"),
    (Fields("rule.process"), "pipeline", "rule.process.pipeline"),
])
def test_fields_are_placed_in_the_wire_message(fields, field, placed):
    error = fields.place(InvalidArgument("wrong", field))
    assert error.field == placed
    assert error.details == f"{placed}: wrong"


def test_an_error_without_a_field_is_left_as_it_is():
    error = BATCH.place(InvalidArgument("wrong"))
    assert error.field is None and error.details == "wrong"


def test_a_stored_submit_is_read_in_either_form():
    from medcompute.server.api.processing import stored_submit

    header = jobs_pb2.SubmitHeader(process=processing_pb2.ProcessHeader(
        pipeline=[GAUSSIAN], input=_inline(), device=processing_pb2.DEVICE_CPU),
        idempotency_key="k", label="l")
    earlier = stored_submit(header.SerializeToString())       # as earlier versions kept it
    assert earlier == submit_request(header, max_image_bytes=LIMIT)
    assert stored_submit(earlier.encode()) == earlier


# -- every field's range, before use (check_ranges) ---------------------------------

def _refused(message, field: str, *fragments: str) -> None:
    from medcompute.server.api.requests import check_ranges

    with pytest.raises(InvalidArgument) as info:
        check_ranges(message)
    assert info.value.field == field
    for fragment in fragments:
        assert fragment in info.value.message


def test_a_sequence_number_sqlite_cannot_hold_is_refused():
    _refused(jobs_pb2.ListInboxRequest(after_seq=2**63), "after_seq", "2**63 - 1")
    _refused(jobs_pb2.WatchInboxRequest(after_seq=2**64 - 1), "after_seq")
    from medcompute.server.api.requests import check_ranges

    check_ranges(jobs_pb2.ListInboxRequest(after_seq=2**63 - 1))


def test_a_float_that_is_not_finite_is_refused():
    from medcompute.proto.v1 import store_pb2

    _refused(store_pb2.PreviewRequest(image_id="a", window_center=float("inf")),
             "window_center", "finite")
    _refused(jobs_pb2.ListJobsRequest(since=float("nan")), "since", "finite")


def test_an_id_longer_than_the_maximum_is_refused_without_echoing_it():
    from medcompute.proto.v1 import store_pb2
    from medcompute.server.api.requests import MAX_ID_CHARS, check_ranges

    long_id = "f" * 10_000
    _refused(jobs_pb2.GetJobRequest(job_id=long_id), "job_id", str(MAX_ID_CHARS), "10000")
    with pytest.raises(InvalidArgument) as info:
        check_ranges(jobs_pb2.GetJobRequest(job_id=long_id))
    assert long_id[:100] not in info.value.details
    check_ranges(store_pb2.GetRequest(image_id="f" * MAX_ID_CHARS))


def test_nested_and_repeated_fields_are_checked_with_their_paths():
    from medcompute.proto.v1 import dicom_pb2

    rule = dicom_pb2.RoutingRule(subscriber="a", process=processing_pb2.ProcessHeader(
        pipeline=[operations_pb2.Operation(gaussian=operations_pb2.GaussianOp(
            sigma=[1.0, float("inf")]))]))
    _refused(dicom_pb2.CreateRoutingRuleRequest(rule=rule),
             "rule.process.pipeline[0].gaussian.sigma[1]", "finite")


def test_an_image_id_in_a_streamed_header_is_bounded_too():
    from medcompute.server.api.requests import MAX_ID_CHARS

    header = processing_pb2.ProcessHeader(
        pipeline=[GAUSSIAN], input=image_pb2.ImageSource(image_id="a" * (MAX_ID_CHARS + 1)))
    with pytest.raises(InvalidArgument) as info:
        process_request(header, max_image_bytes=LIMIT)
    assert info.value.field == "input.image_id"


def _region(region_id="r1", offset=0, length=ARRAY.nbytes) -> processing_pb2.SharedRegion:
    return processing_pb2.SharedRegion(region_id=region_id, offset=offset, length=length)


def test_shared_memory_regions_of_a_process_header_become_references():
    header = processing_pb2.ProcessHeader(
        pipeline=[GAUSSIAN], input=_inline(), input_region=_region(offset=64),
        output_region=_region("r2", 4096, 64))
    request = process_request(header, max_image_bytes=LIMIT, regions=True)
    assert (request.input_region.region_id, request.input_region.offset,
            request.input_region.length) == ("r1", 64, ARRAY.nbytes)
    assert (request.output_region.region_id, request.output_region.offset,
            request.output_region.length) == ("r2", 4096, 64)
    plain = process_request(processing_pb2.ProcessHeader(pipeline=[GAUSSIAN], input=_inline()),
                            max_image_bytes=LIMIT, regions=True)
    assert plain.input_region is None and plain.output_region is None


@pytest.mark.parametrize("change, field", [
    (lambda h: h.input_region.CopyFrom(_region(region_id="")), "input_region.region_id"),
    (lambda h: h.output_region.CopyFrom(_region(length=0)), "output_region.length"),
    (lambda h: (h.input_region.CopyFrom(_region()),
                h.input.CopyFrom(image_pb2.ImageSource(image_id="img1"))), "input.inline"),
])
def test_malformed_regions_are_refused_naming_the_field(change, field):
    header = processing_pb2.ProcessHeader(pipeline=[GAUSSIAN], input=_inline())
    change(header)
    with pytest.raises(InvalidArgument) as exc:
        process_request(header, max_image_bytes=LIMIT, regions=True)
    assert exc.value.field == field


def test_regions_are_refused_where_the_call_is_not_a_process_call():
    header = processing_pb2.ProcessHeader(pipeline=[GAUSSIAN], input=_inline(),
                                          output_region=_region())
    with pytest.raises(InvalidArgument) as exc:
        process_request(header, max_image_bytes=LIMIT)
    assert exc.value.field == "output_region"
    with pytest.raises(InvalidArgument) as exc:
        submit_request(jobs_pb2.SubmitHeader(process=processing_pb2.ProcessHeader(
            pipeline=[GAUSSIAN], input=_inline(), input_region=_region())),
            max_image_bytes=LIMIT)
    assert exc.value.field == "process.input_region"
