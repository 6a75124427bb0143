"""Edge values of request fields: each answered with a precise status naming the field
(never INTERNAL), and the server keeps serving. Issue 20, items 7, 8 and 9."""

from __future__ import annotations

import grpc
import pytest

from medcompute.client.ops import parse_op
from medcompute.proto.v1 import (
    capacity_pb2,
    capacity_pb2_grpc,
    dicom_pb2,
    dicom_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    processing_pb2,
    store_pb2,
    store_pb2_grpc,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(server.address) as ch:
        yield ch


def _fails(call, code, *fragments) -> str:
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if hasattr(result, "__next__"):         # a server-streaming call
            list(result)
    assert info.value.code() == code, info.value.details()
    for fragment in fragments:
        assert fragment in info.value.details(), info.value.details()
    return info.value.details()


def test_an_invoice_for_the_last_month_datetime_can_start(channel):
    jobs = jobs_pb2_grpc.JobsServiceStub(channel)
    reply = jobs.GetInvoice(jobs_pb2.GetInvoiceRequest(month="9999-12"), timeout=30)
    assert reply.invoice.month == "9999-12"
    assert reply.invoice.period_end - reply.invoice.period_start == 31 * 86400
    _fails(lambda: jobs.GetInvoice(jobs_pb2.GetInvoiceRequest(month="10000-01"), timeout=30),
           INVALID, "month")


@pytest.mark.parametrize("seq", [2**63, 2**64 - 1])
def test_an_inbox_sequence_sqlite_cannot_hold(channel, seq):
    jobs = jobs_pb2_grpc.JobsServiceStub(channel)
    _fails(lambda: jobs.ListInbox(jobs_pb2.ListInboxRequest(after_seq=seq), timeout=30),
           INVALID, "after_seq", "2**63 - 1")
    _fails(lambda: jobs.WatchInbox(jobs_pb2.WatchInboxRequest(after_seq=seq), timeout=30),
           INVALID, "after_seq")
    assert jobs.ListInbox(jobs_pb2.ListInboxRequest(after_seq=2**63 - 1),
                          timeout=30).deliveries == []


def test_a_capacity_sqlite_cannot_hold(channel):
    capacity = capacity_pb2_grpc.CapacityServiceStub(channel)
    _fails(lambda: capacity.SetCapacity(capacity_pb2.SetCapacityRequest(
        subscriber="local", allocated_bytes=2**63), timeout=30), INVALID, "allocated_bytes")


def test_a_backup_where_no_folder_can_be_made(channel):
    store = store_pb2_grpc.StoreServiceStub(channel)
    for where in ("/proc/x", "/tmp/" + "a" * 5000, "/dev/null/x"):
        _fails(lambda w=where: store.Backup(store_pb2.BackupRequest(destination=w), timeout=30),
               grpc.StatusCode.FAILED_PRECONDITION, "destination", "cannot create")


def test_a_preview_window_that_is_not_finite(channel):
    store = store_pb2_grpc.StoreServiceStub(channel)
    _fails(lambda: store.Preview(store_pb2.PreviewRequest(
        image_id="f" * 32, window_center=float("inf")), timeout=30), INVALID, "window_center")


def test_a_long_id_is_refused_without_being_echoed(channel):
    from medcompute.server.api.requests import MAX_ID_CHARS

    jobs = jobs_pb2_grpc.JobsServiceStub(channel)
    store = store_pb2_grpc.StoreServiceStub(channel)
    huge = "f" * 10_000
    details = _fails(lambda: jobs.GetJob(jobs_pb2.GetJobRequest(job_id=huge), timeout=30),
                     INVALID, "job_id", str(MAX_ID_CHARS))
    assert len(details) < 200
    _fails(lambda: store.Get(store_pb2.GetRequest(image_id=huge), timeout=30),
           INVALID, "image_id")
    # At the documented maximum: looked up, and not there.
    details = _fails(lambda: jobs.GetJob(jobs_pb2.GetJobRequest(job_id="f" * MAX_ID_CHARS),
                                         timeout=30), grpc.StatusCode.NOT_FOUND, "job_id")
    assert "f" * 65 not in details and "…" in details          # the id is cut
    details = _fails(lambda: list(store.Get(store_pb2.GetRequest(image_id="e" * MAX_ID_CHARS),
                                            timeout=30)), grpc.StatusCode.NOT_FOUND, "image_id")
    assert "e" * 65 not in details


def test_a_routing_rule_is_checked_as_a_request(channel):
    dicom = dicom_pb2_grpc.DicomServiceStub(channel)

    def create(op: str):
        return dicom.CreateRoutingRule(dicom_pb2.CreateRoutingRuleRequest(
            rule=dicom_pb2.RoutingRule(subscriber="local", process=processing_pb2.ProcessHeader(
                pipeline=[parse_op(op)]))), timeout=30)

    _fails(lambda: create("gaussian:sigma=-1"), INVALID,
           "rule.process.pipeline[0].gaussian.sigma", ">= 0")
    _fails(lambda: create("median:size=0"), INVALID, "rule.process.pipeline[0].median.size")
    rule = create("gaussian:sigma=1").rule
    dicom.DeleteRoutingRule(dicom_pb2.DeleteRoutingRuleRequest(rule_id=rule.rule_id),
                            timeout=30)


def _register(metadata: store_pb2.ImageMetadata = None, **header):
    import numpy as np

    from medcompute.proto import wire
    from medcompute.proto.v1 import image_pb2

    array = np.zeros((4, 4), np.uint8)
    desc = image_pb2.ImageDescriptor(encoding=image_pb2.ENCODING_RAW, shape=array.shape,
                                     dtype=wire.dtype_to_proto(array.dtype), size=array.nbytes,
                                     crc32=wire.crc32(array))
    yield store_pb2.RegisterRequest(header=store_pb2.RegisterHeader(image=desc,
                                                                    metadata=metadata,
                                                                    **header))
    yield store_pb2.RegisterRequest(chunk=image_pb2.Chunk(data=array.tobytes()))


def test_a_streamed_header_is_range_checked_as_it_is_read(channel):
    store = store_pb2_grpc.StoreServiceStub(channel)
    _fails(lambda: store.Register(_register(retention_seconds=2**64 - 1), timeout=30),
           INVALID, "header.retention_seconds", "2**63 - 1")
    _fails(lambda: store.Register(_register(store_pb2.ImageMetadata(
        window_center=float("inf"))), timeout=30), INVALID, "header.metadata.window_center",
        "finite")
    reply = store.Register(_register(store_pb2.ImageMetadata(window_center=40.0)), timeout=30)
    assert reply.image.metadata.window_center == 40.0


def test_a_long_value_repeated_in_an_error_does_not_cost_the_status(channel):
    from medcompute.proto.v1 import admin_pb2, admin_pb2_grpc

    admin = admin_pb2_grpc.AdminServiceStub(channel)
    details = _fails(lambda: admin.CreateKey(admin_pb2.CreateKeyRequest(
        subscriber="s", roles=["x" * 100_000]), timeout=30), INVALID, "roles")
    assert len(details) <= 1024
