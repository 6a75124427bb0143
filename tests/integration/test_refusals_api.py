"""Refusals of the API servicers that only a served call reaches: the status code, the
field that prefixes the details, and the message; the server keeps serving."""

from __future__ import annotations

import grpc
import pytest

from medcompute.client.ops import parse_op
from medcompute.proto.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    batch_pb2,
    batch_pb2_grpc,
    dicom_pb2,
    dicom_pb2_grpc,
    image_pb2,
    jobs_pb2,
    processing_pb2,
    store_pb2,
    store_pb2_grpc,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

INLINE = image_pb2.ImageSource(inline=image_pb2.ImageDescriptor(
    encoding=image_pb2.ENCODING_RAW, shape=[4, 4], dtype=image_pb2.DATA_TYPE_UINT8, size=16))
PROCESS = processing_pb2.ProcessHeader(pipeline=[parse_op("gaussian:sigma=1")], input=INLINE)


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(server.address) as channel:
        yield channel


def _refused(call, code: grpc.StatusCode, field: str, message: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    assert info.value.details() == f"{field}: {message}"


NO_INPUT = "leave it unset in a batch: the images are in header.inputs"


def test_a_batch_whose_process_names_an_input_is_refused(channel):
    stub = batch_pb2_grpc.BatchServiceStub(channel)
    header = batch_pb2.ProcessBatchHeader(process=PROCESS, inputs=[INLINE])
    _refused(lambda: list(stub.ProcessBatch(iter([batch_pb2.ProcessBatchRequest(
        header=header)]), timeout=60)), grpc.StatusCode.INVALID_ARGUMENT,
        "header.process.input", NO_INPUT)
    submit = batch_pb2.SubmitBatchHeader(submit=jobs_pb2.SubmitHeader(process=PROCESS),
                                         inputs=[INLINE])
    _refused(lambda: stub.SubmitBatch(iter([batch_pb2.SubmitBatchRequest(header=submit)]),
                                      timeout=60),
             grpc.StatusCode.INVALID_ARGUMENT, "header.submit.process.input", NO_INPUT)


def test_a_registration_without_its_descriptor_is_refused(channel, client):
    stub = store_pb2_grpc.StoreServiceStub(channel)
    header = store_pb2.RegisterHeader(retention_seconds=60)
    _refused(lambda: stub.Register(iter([store_pb2.RegisterRequest(header=header)]),
                                   timeout=60),
             grpc.StatusCode.INVALID_ARGUMENT, "header.image", "expected the image's descriptor")
    client.store.find(limit=1)            # still serving: a good call right after succeeds


def test_removing_a_delivery_rule_that_does_not_exist_is_not_found(channel):
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    request = admin_pb2.DisallowDeliveryRequest(sender="clinic-x", recipient="lab-y")
    _refused(lambda: stub.DisallowDelivery(request, timeout=60), grpc.StatusCode.NOT_FOUND,
             "recipient", "no rule lets 'clinic-x' deliver to 'lab-y'")


def test_a_source_with_a_retrieve_method_the_enum_has_not_is_refused(channel):
    stub = dicom_pb2_grpc.DicomServiceStub(channel)
    source = dicom_pb2.DicomSource(name="pacs", ae_title="PACS", host="127.0.0.1", port=11112,
                                   method=9)
    _refused(lambda: stub.RegisterSource(dicom_pb2.RegisterSourceRequest(source=source),
                                         timeout=60),
             grpc.StatusCode.INVALID_ARGUMENT, "source.method",
             "expected one of RETRIEVE_METHOD_UNSPECIFIED, RETRIEVE_METHOD_MOVE, "
             "RETRIEVE_METHOD_GET")


def test_collect_on_a_server_without_a_dicom_port_fails_its_precondition(channel):
    stub = dicom_pb2_grpc.DicomServiceStub(channel)
    _refused(lambda: stub.Collect(dicom_pb2.CollectRequest(source="pacs"), timeout=60),
             grpc.StatusCode.FAILED_PRECONDITION, "source",
             "this server has no DICOM port: start it with --dicom-port to collect")
