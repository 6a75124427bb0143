"""What foreign clients rely on, against a real server: health for every service,
reflection v1 and v1alpha, google.rpc details beside the message, required ids, enum
values named, Register's validation and its answer to a changed re-registration."""

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status

from medcompute.client import ServiceError
from medcompute.client.ops import parse_op
from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2 as img
from medcompute.proto.v1 import processing_pb2 as pb
from medcompute.proto.v1 import store_pb2, store_pb2_grpc
from medcompute.server.api.operations import OPERATIONS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SERVICES = ("medcompute.v1.ProcessingService", "medcompute.v1.StoreService",
            "medcompute.v1.JobsService", "medcompute.v1.AdminService")
A = np.arange(64, dtype=np.float32).reshape(8, 8)


def _header(array=A, ops=("gaussian:sigma=1",), **changes) -> pb.ProcessHeader:
    desc = img.ImageDescriptor(encoding=img.ENCODING_RAW, shape=array.shape,
                               dtype=wire.dtype_to_proto(array.dtype), size=array.nbytes)
    return pb.ProcessHeader(pipeline=[parse_op(t) for t in ops],
                            input=img.ImageSource(inline=desc), **changes)


def _process(raw, header, array=A):
    return raw.process([pb.ProcessRequest(header=header),
                        pb.ProcessRequest(chunk=img.Chunk(data=array.tobytes()))])


def _bad_request(exc: grpc.RpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(exc)
    assert status is not None, "no google.rpc.Status in the trailers"
    assert status.message == exc.details() and status.code == exc.code().value[0]
    out = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad), detail.type_url
        out += [(v.field, v.description) for v in bad.field_violations]
    return out


def test_health_answers_for_every_service(server):
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("",) + SERVICES:
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        with pytest.raises(grpc.RpcError) as info:
            health.Check(health_pb2.HealthCheckRequest(service="medcompute.v1.Store"), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_lists_and_describes_every_service(server, version):
    path = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
    with grpc.insecure_channel(server.address) as channel:
        # v1 and v1alpha are the same messages under two package names.
        info = channel.stream_stream(
            path, request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        requests = [reflection_pb2.ServerReflectionRequest(list_services="")] + [
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=name)
            for name in SERVICES + ("grpc.reflection.v1.ServerReflection",)]
        replies = list(info(iter(requests), timeout=10))
    names = {s.name for s in replies[0].list_services_response.service}
    assert set(SERVICES) | {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                            "grpc.reflection.v1alpha.ServerReflection"} <= names
    for name, reply in zip(SERVICES + ("grpc.reflection.v1.ServerReflection",), replies[1:]):
        assert reply.WhichOneof("message_response") == "file_descriptor_response", name
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in reply.file_descriptor_response.file_descriptor_proto]
        package, short = name.rsplit(".", 1)
        assert any(f.package == package and short in [s.name for s in f.service]
                   for f in files), name


def test_an_invalid_argument_carries_a_bad_request_beside_the_message(raw, client):
    with pytest.raises(grpc.RpcError) as info:
        _process(raw, _header(ops=("gaussian:sigma=-1",)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("header.pipeline[0].gaussian.sigma: must be >= 0")
    [(field, description)] = _bad_request(info.value)
    assert field == "header.pipeline[0].gaussian.sigma"
    assert description == "must be >= 0, got -1"
    # The client library exposes them.
    with pytest.raises(ServiceError) as caught:
        client.process(A, ["gaussian:sigma=-1"])
    assert caught.value.violations == [(field, description)]


def test_a_not_found_carries_no_bad_request(client):
    with pytest.raises(ServiceError) as caught:
        client.store.info("0" * 32)
    assert caught.value.code == grpc.StatusCode.NOT_FOUND and caught.value.violations == []


def test_an_empty_image_id_is_invalid_argument(raw, server):
    header = pb.ProcessHeader(pipeline=[parse_op("gaussian:sigma=1")],
                              input=img.ImageSource(image_id=""))
    with pytest.raises(grpc.RpcError) as info:
        raw.process([pb.ProcessRequest(header=header)])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("header.input.image_id: required")
    assert _bad_request(info.value)[0][0] == "header.input.image_id"
    with grpc.insecure_channel(server.address) as channel:
        store = store_pb2_grpc.StoreServiceStub(channel)
        for call, request in ((store.Delete, store_pb2.DeleteRequest()),
                              (store.Preview, store_pb2.PreviewRequest()),
                              (lambda r, timeout: list(store.Get(r, timeout=timeout)),
                               store_pb2.GetRequest())):
            with pytest.raises(grpc.RpcError) as info:
                call(request, timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
            assert info.value.details().startswith("image_id: required")


@pytest.mark.parametrize(("changes", "field", "named"), [
    ({"device": 99}, "header.device", "got 99 (not a value of Device)"),
    ({"output_format": 42}, "header.output_format", "got 42 (not a value of OutputFormat)"),
    ({"compute_dtype": img.DATA_TYPE_INT16}, "header.compute_dtype",
     "expected one of DATA_TYPE_FLOAT32, DATA_TYPE_FLOAT64; got DATA_TYPE_INT16 (4)"),
    ({"result_compression": 9}, "header.result_compression",
     "got 9 (not a value of Compression)"),
])
def test_an_unknown_enum_value_is_named(raw, changes, field, named):
    with pytest.raises(grpc.RpcError) as info:
        _process(raw, _header(**changes))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field + ": "), info.value.details()
    assert named in info.value.details(), info.value.details()


def test_an_unknown_enum_value_in_an_operation_is_named(raw):
    header = _header()
    header.pipeline[0].gaussian.mode = 77
    with pytest.raises(grpc.RpcError) as info:
        _process(raw, header)
    assert "header.pipeline[0].gaussian.mode" in info.value.details()
    assert "77 (not a value of BoundaryMode)" in info.value.details()


def test_unspecified_zeros_are_the_documented_defaults(raw):
    header = _header(device=pb.DEVICE_UNSPECIFIED, output_format=pb.OUTPUT_FORMAT_UNSPECIFIED,
                     result_compression=img.COMPRESSION_UNSPECIFIED)
    replies = _process(raw, header)
    out = replies[0].header.output
    assert out.encoding == img.ENCODING_RAW and out.dtype == img.DATA_TYPE_FLOAT32
    assert replies[0].header.backend == "numpy"
    explicit = _process(raw, _header(device=pb.DEVICE_AUTO, output_format=pb.OUTPUT_FORMAT_RAW,
                                     result_compression=img.COMPRESSION_NONE))
    assert b"".join(r.chunk.data for r in replies[1:]) == \
        b"".join(r.chunk.data for r in explicit[1:])


@pytest.mark.parametrize(("metadata", "field", "words"), [
    ({"acquisition_date": "2026-13-45"}, "header.metadata.acquisition_date",
     "not a date of the calendar"),
    ({"acquisition_date": "20260230"}, "header.metadata.acquisition_date",
     "not a date of the calendar"),
    ({"sop_instance_uids": ["not a uid!"]}, "header.metadata.sop_instance_uids[0]",
     "is not a DICOM UID"),
    ({"sop_instance_uids": ["1.2.03"]}, "header.metadata.sop_instance_uids[0]",
     "no leading zeros"),
    ({"study_instance_uid": "1." + "2" * 70}, "header.metadata.study_instance_uid",
     "1 to 64 characters"),
    ({"series_instance_uid": "1..2"}, "header.metadata.series_instance_uid",
     "is not a DICOM UID"),
])
def test_register_validates_dates_and_uids(client, metadata, field, words):
    with pytest.raises(ServiceError) as caught:
        client.store.register(np.zeros((2, 2), np.uint8), metadata=metadata)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details.startswith(field + ": ") and words in caught.value.details
    assert caught.value.violations[0][0] == field


def test_a_valid_date_in_either_form_is_kept(client):
    stored = client.store.register(np.zeros((2, 3), np.uint8),
                                   metadata={"acquisition_date": "2024-02-29",
                                             "sop_instance_uids": ["2.25.4242"]})
    assert stored.message.metadata.acquisition_date == "20240229"


def test_re_registering_a_sop_uid_with_other_metadata_says_so(client):
    uid = "2.25.1234567890123"
    first = client.store.register(np.ones((2, 2), np.uint8), metadata={
        "sop_instance_uids": [uid], "modality": "CT", "acquisition_date": "20240101"})
    same = client.store.register(np.ones((2, 2), np.uint8), metadata={
        "sop_instance_uids": [uid], "modality": "CT", "acquisition_date": "20240101"})
    assert same.existing and same.image_id == first.image_id and same.differing_fields == []
    other = client.store.register(np.ones((2, 2), np.uint8), metadata={
        "sop_instance_uids": [uid], "modality": "MR", "acquisition_date": "2024-01-02"})
    assert other.existing and other.image_id == first.image_id
    assert other.differing_fields == ["metadata.acquisition_date", "metadata.modality"]
    kept = client.store.info(first.image_id).message.metadata
    assert (kept.modality, kept.acquisition_date) == ("CT", "20240101")


def test_list_operations_over_the_wire_is_the_catalogue_of_the_descriptors(client):
    listed = {op["name"]: op for op in client.operations()}
    assert set(listed) == set(OPERATIONS)
    for name, spec in OPERATIONS.items():
        params = {p["name"]: p for p in listed[name]["parameters"]}
        assert list(params) == [p.name for p in spec.params]
        for p in spec.params:
            assert params[p.name].get("per_axis", False) == p.per_axis, (name, p.name)
    bandpass = {p["name"]: p for p in listed["bandpass"]["parameters"]}
    assert not bandpass["low_cutoff"].get("per_axis") and not bandpass["high_cutoff_mm"].get(
        "per_axis")


@pytest.mark.parametrize(("call", "request_", "field", "named"), [
    ("Find", store_pb2.FindRequest(kind=12), "kind", "got 12 (not a value of ImageKind)"),
    ("Get", store_pb2.GetRequest(image_id="x", format=5), "format",
     "got 5 (not a value of StoredFormat)"),
])
def test_an_unknown_enum_value_in_a_store_call_is_named(server, call, request_, field, named):
    with grpc.insecure_channel(server.address) as channel:
        method = getattr(store_pb2_grpc.StoreServiceStub(channel), call)
        with pytest.raises(grpc.RpcError) as info:
            reply = method(request_, timeout=10)
            list(reply) if call == "Get" else reply
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field + ": ") and named in info.value.details()


def test_re_registering_dicom_files_with_other_metadata_says_so(client, tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    # MR_small has no SeriesDescription: a caller's description fills it in. A SOP
    # Instance UID of its own keeps it apart from other tests' copies of the file.
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.SOPInstanceUID = generate_uid()
    path = tmp_path / "mr.dcm"
    ds.save_as(path)
    first = client.store.register(str(path), metadata={"description": "first read"})
    again = client.store.register(str(path), metadata={"description": "first read"})
    assert again.existing and again.image_id == first.image_id
    assert again.differing_fields == []
    other = client.store.register(str(path), metadata={"description": "second read",
                                                       "modality": "CT"})
    # The files' own modality wins over a caller's (so it does not differ); the
    # description does, and the kept one stays.
    assert other.existing and other.differing_fields == ["metadata.description"]
    assert client.store.info(first.image_id).message.metadata.description == "first read"
