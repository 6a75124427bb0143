"""JobsService translation: job views to messages, states both ways, the stored forms."""

import dataclasses

import pytest

from medcompute.proto.v1 import image_pb2, jobs_pb2, processing_pb2
from medcompute.server.api.jobs import (
    ProtoJobCodec,
    delivery_message,
    domain_state,
    job_info,
    job_state,
    list_response,
    watch_response,
)
from medcompute.server.api.requests import submit_request
from medcompute.server.errors import InvalidArgument
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.views import (
    DeliveryState,
    DeliveryView,
    JobPage,
    JobUpdate,
    job_view,
)


def _job(**kw):
    job = jobs.new_job(subscriber="s", operations=["gaussian", "edge"], inputs=["inline:8"],
                       device="cpu", created_at=10.0, job_id="j1", **kw)
    return jobs.apply(jobs.apply(job, jobs.InputsReceived(11.0)), jobs.Started(12.0, "w"))


@pytest.mark.parametrize("state", list(jobs.State))
def test_every_state_has_its_number_and_back(state):
    assert domain_state(job_state(state)) is state
    assert jobs_pb2.JobState.Name(job_state(state)) == f"JOB_STATE_{state.value}"


@pytest.mark.parametrize("number", [jobs_pb2.JOB_STATE_UNSPECIFIED, 99])
def test_an_unspecified_or_unknown_state_is_refused_by_name(number):
    with pytest.raises(InvalidArgument) as err:
        domain_state(number)
    assert err.value.field == "states" and "JOB_STATE_QUEUED" in err.value.message


def test_job_info_carries_every_field_of_the_view():
    done = jobs.apply(_job(destination="reader"), jobs.Succeeded(13.0))
    view = job_view(done, {"label": "night", "idempotency_key": "k", "result_path": "/x"},
                    {"delivered_at": 14.0, "fetched_at": None}, 0.5)
    info = job_info(view)
    assert (info.job_id, info.subscriber, info.state, tuple(info.operations)) == (
        "j1", "s", jobs_pb2.JOB_STATE_SUCCEEDED, ("gaussian", "edge"))
    assert (info.destination, info.delivery, info.label, info.idempotency_key) == (
        "reader", jobs_pb2.DELIVERY_STATE_DELIVERED, "night", "k")
    assert (info.created_at, info.queued_at, info.started_at, info.finished_at,
            info.delivered_at, info.fetched_at) == (10.0, 11.0, 12.0, 13.0, 14.0, 0.0)
    assert (info.worker, info.progress, info.result_available, info.asynchronous) == (
        "w", 1.0, True, True)
    names = {f.name for f in dataclasses.fields(view)}
    assert names == {f.name for f in jobs_pb2.JobInfo.DESCRIPTOR.fields}


@pytest.mark.parametrize("delivery", list(DeliveryState))
def test_every_delivery_state_has_its_number(delivery):
    view = dataclasses.replace(job_view(_job(), None), delivery=delivery)
    assert jobs_pb2.DeliveryState.Name(job_info(view).delivery) == \
        f"DELIVERY_STATE_{delivery.value}"


def test_watch_and_list_replies():
    view = job_view(_job(), None, None, 0.25)
    reply = watch_response(JobUpdate(view, "slab 1 of 4 done"))
    assert reply.message == "slab 1 of 4 done" and reply.job.progress == 0.25
    page = list_response(JobPage([view, view], "10.0:j1"))
    assert len(page.jobs) == 2 and page.next_page_token == "10.0:j1"


def test_a_delivery_carries_the_stored_results_output():
    header = processing_pb2.ResultHeader(job_id="j1", output=image_pb2.ImageDescriptor(
        encoding=image_pb2.ENCODING_DICOM, file_sizes=[3, 4]))
    message = delivery_message(DeliveryView(7, "j1", "s", ("gaussian",), "night", 14.0, 0.0,
                                            header.SerializeToString()))
    assert (message.seq, message.job_id, message.sender, list(message.operations)) == (
        7, "j1", "s", ["gaussian"])
    assert list(message.output.file_sizes) == [3, 4]


def test_the_codec_reads_a_stored_submit_in_todays_and_the_earlier_form():
    submit = jobs_pb2.SubmitHeader(idempotency_key="k", label="night", destination="reader")
    submit.process.result_compression = image_pb2.COMPRESSION_ZSTD
    submit.process.input.image_id = "img"
    submit.process.pipeline.add().gaussian.sigma.extend([1.0])
    request = submit_request(submit, max_image_bytes=1 << 30)
    for stored in (request.encode(), submit.SerializeToString()):
        process = ProtoJobCodec.process_header(stored)
        assert process.result_compression == image_pb2.COMPRESSION_ZSTD
        assert [e.stored for e in process.expected] == ["img"]
        assert list(process.pipeline) == list(submit.process.pipeline)


def test_the_codec_reads_what_sending_a_stored_result_needs():
    dicom = processing_pb2.ResultHeader(output=image_pb2.ImageDescriptor(
        encoding=image_pb2.ENCODING_DICOM, file_sizes=[3, 4],
        compression=image_pb2.COMPRESSION_BLOSC)).SerializeToString()
    info = ProtoJobCodec.result_info(dicom)
    assert (info.compression, info.itemsize, info.file_sizes) == (
        image_pb2.COMPRESSION_BLOSC, 1, (3, 4))


def test_a_stored_raw_result_is_sent_with_its_dtype_as_the_shuffle_unit():
    # As result_header describes a raw result: ENCODING_RAW, with its dtype.
    raw = processing_pb2.ResultHeader(output=image_pb2.ImageDescriptor(
        encoding=image_pb2.ENCODING_RAW, dtype=image_pb2.DATA_TYPE_FLOAT32, shape=[2, 3],
        compression=image_pb2.COMPRESSION_BLOSC)).SerializeToString()
    info = ProtoJobCodec.result_info(raw)
    assert (info.compression, info.itemsize, info.file_sizes) == (
        image_pb2.COMPRESSION_BLOSC, 4, ())
    # A description an earlier version stored without its encoding reads the same.
    unspecified = processing_pb2.ResultHeader(output=image_pb2.ImageDescriptor(
        dtype=image_pb2.DATA_TYPE_INT16, shape=[2, 3])).SerializeToString()
    assert ProtoJobCodec.result_info(unspecified).itemsize == 2
