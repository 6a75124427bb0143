"""The image store through the real server and a real Dask cluster: register, find, get,
delete, process by id, derived results, previews, bad input, and the command line."""

from __future__ import annotations

import io
import json
import sqlite3
import threading

import cv2
import grpc
import numpy as np
import pydicom
import pytest
import scipy.ndimage as ndi

from medcompute.client import Client, ServiceError
from medcompute.client.cli import main
from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2, store_pb2, store_pb2_grpc
from medcompute.server.config import ServerConfig
from medcompute.server.dicom import read as dicom
from medcompute.server.store import admin as store_admin
from tests import store_helpers

H = store_helpers
pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture
def store(server):
    return server.running.store


@pytest.fixture
def raw_store(server):
    channel = grpc.insecure_channel(server.address)
    yield store_pb2_grpc.StoreServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def tight(server_thread, tmp_path_factory):
    """A server of this module's own with small limits (slabs of 64 KiB, 4 Mi voxels), so
    that no test changes the configuration of the server the other tests share."""
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path_factory.mktemp("tight"),
                          workers=2, split_bytes=64 << 10, max_voxels=1 << 22)
    with server_thread(config) as running:
        yield running


@pytest.fixture
def tight_client(tight):
    with Client(tight.address, timeout=120) as c:
        yield c


@pytest.fixture
def tight_raw_store(tight):
    channel = grpc.insecure_channel(tight.address)
    yield store_pb2_grpc.StoreServiceStub(channel)
    channel.close()


def _blob_files(store) -> set[str]:
    return {p.name for p in store.blobs.root.rglob("*") if p.is_file()}


def _assert_sound(server, store, before: set[str] | None = None):
    server.call(store.wait_idle())
    assert list(store.blobs.tmp.iterdir()) == []
    if before is not None:
        assert _blob_files(store) == before
    report = server.call(store_admin.verify(store))
    assert report.ok, report.problems


# -- register, find, get, delete -------------------------------------------------------------

def test_register_a_dicom_file_find_get_and_delete(client, server, store):
    original = H.data_of("CT_small.dcm")
    source = pydicom.dcmread(H.CT)
    ct = client.store.register(H.CT)
    assert ct.kind == "original" and ct.shape == (128, 128) and not ct.existing
    m = ct.metadata
    assert m["modality"] == "CT" and m["patient_id"] == source.PatientID
    assert m["series_instance_uid"] == source.SeriesInstanceUID
    assert ct.conditions["kvp"] == 120.0 and ct.conditions["tube_current_ma"] == 170.0
    again = client.store.register(H.CT, compression="zstd")
    assert again.existing and again.image_id == ct.image_id
    expected, _ = dicom.decode([original])
    for compression in ("none", "zstd", "blosc"):
        got = client.store.get(ct, compression=compression)
        np.testing.assert_array_equal(got.array, expected)
        assert got.image.metadata == m
    files = client.store.get(ct.image_id, dicom=True).files
    assert files == [original]
    found = client.store.find(patient_id=source.PatientID, modality="CT",
                              date_from="1997-04-30", date_to="19970430")
    assert ct.image_id in [i.image_id for i in found]
    assert client.store.find(study_instance_uid=source.StudyInstanceUID, limit=1)
    assert ct.image_id not in [i.image_id for i in client.store.find(date_from="19980101")]
    assert not client.store.find(registered_by="someone-else")
    path = store.blobs.path(server.call(store.get(ct.image_id, owner="local"))
                            .blob("voxels").digest)
    assert path.exists()
    assert client.store.delete(ct) > 0 and not path.exists()
    for call in (lambda: client.store.get(ct), lambda: client.store.delete(ct),
                 lambda: client.store.preview(ct)):
        with pytest.raises(ServiceError) as caught:
            call()
        assert caught.value.code == NOT_FOUND
    _assert_sound(server, store)


def test_register_a_series_folder_and_a_multiframe_file(client, tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for k, part in enumerate(H.ct_series(5)):
        (folder / f"IM{k}.dcm").write_bytes(part)
    series = client.store.register(folder)
    assert series.shape == (5, 128, 128) and series.spacing[0] == pytest.approx(2.5)
    assert len(series.metadata["sop_instance_uids"]) == 5
    assert series.message.dicom_files == 5
    dose = client.store.register(pydicom.data.get_testdata_file("rtdose.dcm"))
    assert dose.shape == (15, 10, 10) and dose.metadata["modality"] == "RTDOSE"


def test_register_a_raw_array_with_its_metadata(client):
    vol = np.random.default_rng(5).integers(-1000, 2000, (9, 40, 50)).astype(np.int16)
    meta = {"modality": "MR", "patient_id": "RAW-1", "acquisition_date": "20240102",
            "manufacturer": "ACME", "device_model": "M1",
            "conditions": {"repetition_time_ms": 500, "echo_time_ms": 15,
                           "flip_angle_deg": 70, "field_strength_t": 3}}
    img = client.store.register(vol, spacing=(3.0, 0.8, 0.8), metadata=meta,
                                compression="blosc")
    assert img.shape == vol.shape and img.dtype == np.int16 and img.spacing == (3.0, 0.8, 0.8)
    assert img.conditions["field_strength_t"] == 3 and img.metadata["manufacturer"] == "ACME"
    np.testing.assert_array_equal(client.store.get(img).array, vol)
    [found] = client.store.find(patient_id="RAW-1")
    assert found.image_id == img.image_id and found.conditions == img.conditions


def test_find_pages_through_many_images(client):
    ids = [client.store.register(np.full((2, 2), k, np.uint8),
                                 metadata={"patient_id": "PAGES"}).image_id for k in range(5)]
    page, token = client.store.find_page(patient_id="PAGES", page_size=2)
    assert [i.image_id for i in page] == ids[:2] and token
    assert [i.image_id for i in client.store.find(patient_id="PAGES", page_size=2)] == ids
    with pytest.raises(ServiceError) as caught:
        client.store.find_page(page_token="not-a-token")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in caught.value.details


def test_another_subscribers_image_answers_not_found(client, server, store):
    vol = np.arange(16, dtype=np.float32).reshape(4, 4)

    async def register_as_other():
        desc = H.raw_descriptor(vol)
        return await H.register(store, desc, H.stream(H.payloads(vol)), owner="another")

    record, _, _ = server.call(register_as_other())
    for call in (lambda: client.store.get(record.id), lambda: client.store.delete(record.id),
                 lambda: client.store.preview(record.id),
                 lambda: client.process(f"id:{record.id}", ["gaussian:sigma=1"])):
        with pytest.raises(ServiceError) as caught:
            call()
        assert caught.value.code == NOT_FOUND, caught.value
        assert "no stored image" in caught.value.details
    assert record.id not in [i.image_id for i in client.store.find()]


# -- process by id, derived results ----------------------------------------------------------

def test_process_a_stored_array_by_id(client, server):
    vol = np.random.default_rng(6).integers(0, 1000, (6, 30, 40)).astype(np.uint16)
    img = client.store.register(vol)
    result = client.process(f"id:{img.image_id}", ["gaussian:sigma=1.5"])
    expected = ndi.gaussian_filter(vol.astype(np.float32), 1.5, mode="nearest", truncate=4.0)
    np.testing.assert_allclose(result.array, expected, rtol=1e-5, atol=1e-3)
    assert result.header.usage.bytes_in == 0 and result.header.usage.voxels == vol.size
    job = server.call(server.catalog.get_job(result.job_id))
    assert job.inputs == (f"image:{img.image_id}",)
    assert not result.stored_image_id and not result.reused


def test_subtraction_takes_its_second_operand_by_id(client):
    rng = np.random.default_rng(7)
    live = rng.integers(0, 1000, (32, 32)).astype(np.int16)
    mask = rng.integers(0, 1000, (32, 32)).astype(np.int16)
    live_id = client.store.register(live).image_id
    mask_img = client.store.register(mask)
    by_id = client.process(f"id:{live_id}", ["subtract:operand=0"], operands=[mask_img])
    np.testing.assert_allclose(by_id.array, live.astype(np.float32) - mask)
    mixed = client.process(live, ["subtract:operand=0"], operands=[f"id:{mask_img.image_id}"])
    np.testing.assert_array_equal(mixed.array, by_id.array)


def test_store_result_keeps_a_derived_dicom_series_and_reuses_it(client, server, store,
                                                                tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for k, part in enumerate(H.ct_series(3)):
        (folder / f"IM{k}.dcm").write_bytes(part)
    series = client.store.register(folder)
    ops = ["gaussian:sigma_mm=1", "edge:operator=sobel"]
    first = client.process(series, ops, store_result=True, output="dicom_series")
    assert first.stored_image_id and not first.reused and len(first.files) == 3
    derived = client.store.info(first.stored_image_id)
    assert derived.kind == "derived" and derived.message.source_image_id == series.image_id
    assert list(derived.message.operations) == ["gaussian", "edge"]
    assert derived.message.job_id == first.job_id and "sobel" in derived.message.derivation
    source_meta, meta = series.metadata, derived.metadata
    assert meta["study_instance_uid"] == source_meta["study_instance_uid"]
    assert meta["series_instance_uid"] != source_meta["series_instance_uid"]
    assert meta["conditions"] == source_meta["conditions"]
    fetched = client.store.get(derived, dicom=True)
    assert fetched.files == first.files                  # the files the caller got
    datasets = [pydicom.dcmread(io.BytesIO(b)) for b in fetched.files]
    assert all("DERIVED" in ds.ImageType for ds in datasets)
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert client.store.get(derived).array.shape == (3, 128, 128)
    assert derived.image_id in [i.image_id for i in
                                client.store.find(source_image_id=series.image_id)]
    # The same request again: answered from the store, nothing computed, and it says so.
    again = client.process(series, ops, store_result=True, output="dicom_series")
    assert again.reused and again.stored_image_id == derived.image_id
    assert again.files == first.files and again.header.usage.compute_seconds == 0
    assert again.header.backend == first.header.backend
    fresh = client.process(series, ops, output="dicom_series", recompute=True)
    assert not fresh.reused and fresh.usage["compute_seconds"] > 0
    other = client.process(series, ["gaussian:sigma_mm=2"], store_result=True)
    assert not other.reused and other.stored_image_id != derived.image_id
    _assert_sound(server, store)


def test_store_result_of_a_raw_request_on_a_dicom_file(client):
    ct = client.store.register(H.CT)
    result = client.process(ct, ["mean:size=3"], store_result=True, retention=3600)
    derived = client.store.get(result.stored_image_id)
    np.testing.assert_array_equal(derived.array, result.array)   # the exact voxels
    assert derived.image.message.HasField("expires_at")
    files = client.store.get(result.stored_image_id, dicom=True).files
    ds = pydicom.dcmread(io.BytesIO(files[0]))                   # and a derived series
    assert "DERIVED" in ds.ImageType and ds.PatientID == pydicom.dcmread(H.CT).PatientID
    processed = client.process(f"id:{result.stored_image_id}", ["mip:axis=0"])
    assert processed.array.shape == (128,)


def test_store_result_with_an_inline_input(client):
    vol = np.ones((8, 8), np.float32)
    result = client.process(vol, ["gaussian:sigma=1"], store_result=True)
    derived = client.store.info(result.stored_image_id)
    assert derived.kind == "derived" and derived.message.source_image_id == ""
    with pytest.raises(ServiceError) as caught:
        client.store.get(derived, dicom=True)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and "no DICOM" in \
        caught.value.details


def test_chunks_for_a_stored_image_are_refused(client, raw):
    from medcompute.client.ops import parse_op
    from medcompute.proto.v1 import processing_pb2 as pb

    img = client.store.register(np.zeros((4, 4), np.float32))
    head = pb.ProcessHeader(pipeline=[parse_op("gaussian:sigma=1")],
                            input=image_pb2.ImageSource(image_id=img.image_id))
    with pytest.raises(grpc.RpcError) as caught:
        raw.process([pb.ProcessRequest(header=head),
                     pb.ProcessRequest(chunk=image_pb2.Chunk(data=b"\0" * 64))])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "stored image" in caught.value.details()


# -- previews --------------------------------------------------------------------------------

def test_previews_of_stored_and_derived_images(client):
    ct = client.store.register(H.CT)
    p = client.store.preview(ct)
    image = cv2.imdecode(np.frombuffer(p.png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image.shape == (p.height, p.width) and image.dtype == np.uint8
    assert "CT soft tissue" in p.rendering
    series = client.store.register(np.random.default_rng(8).random((20, 300, 200)),
                                   spacing=(1.0, 0.5, 1.0))
    p = client.store.preview(series, max_size=128)
    assert "maximum intensity projection" in p.rendering and (p.width, p.height) == (128, 96)
    derived = client.process(ct, ["gaussian:sigma=2"], store_result=True).stored_image_id
    p = client.store.preview(derived, window=(0, 500))
    assert "window centre 0 width 500 (requested)" in p.rendering


# -- bad input and faults --------------------------------------------------------------------

BAD = {
    "truncated": (lambda: [H.truncated()], "truncated"),
    "bad VR": (lambda: [H.bad_vr()], "NumberOfFrames (0028,0008)"),
    "no pixel data": (lambda: [H.no_pixel_data()], "has no Pixel Data"),
    "pixel data length": (lambda: [H.short_pixel_data()], "holds 32668 bytes"),
    "absurd dimensions": (lambda: [H.absurd_dimensions()], "absurd image size"),
    "deflate bomb": (lambda: [H.deflate_bomb()], "inflates to more than"),
    "mixed series": (H.mixed_series, "2 different series"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_dicom_gets_a_precise_error_and_the_store_stays_intact(
        case, tight, tight_client, tight_raw_store):
    # The tight server's smaller voxel limit bounds how far it inflates a deflated file.
    server, store, client, raw_store = tight, tight.running.store, tight_client, tight_raw_store
    make, words = BAD[case]
    kept = client.store.register(H.MR)
    before = _blob_files(store)
    count = server.call(store.catalog.count())
    parts = make()
    messages = [store_pb2.RegisterRequest(header=store_pb2.RegisterHeader(
        image=H.dicom_descriptor(parts)))]
    messages += [store_pb2.RegisterRequest(chunk=image_pb2.Chunk(data=d))
                 for d in H.payloads(b"".join(parts))]
    with pytest.raises(grpc.RpcError) as caught:
        raw_store.Register(iter(messages), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert caught.value.details().startswith("header.image")
    assert words in caught.value.details()
    assert server.call(store.catalog.count()) == count
    _assert_sound(server, store, before)
    np.testing.assert_array_equal(client.store.get(kept).array,
                                  dicom.decode([H.data_of("MR_small.dcm")])[0])


def test_a_client_that_disconnects_mid_upload_leaves_nothing(server, store, raw_store):
    before = _blob_files(store)
    count = server.call(store.catalog.count())
    vol = np.zeros(8 << 20, np.uint8)
    hold = threading.Event()

    def messages():
        yield store_pb2.RegisterRequest(header=store_pb2.RegisterHeader(
            image=H.raw_descriptor(vol)))
        for payload in H.payloads(vol)[:3]:
            yield store_pb2.RegisterRequest(chunk=image_pb2.Chunk(data=payload))
        hold.wait(60)   # then the client goes away without finishing

    call = raw_store.Register.future(messages(), timeout=60)
    try:
        server.call(store.wait_receiving())
        assert list(store.blobs.tmp.iterdir())          # a temporary blob is being written
        call.cancel()
    finally:
        hold.set()
    _assert_sound(server, store, before)
    assert server.call(store.catalog.count()) == count


def test_register_refuses_what_its_descriptor_does_not_promise(raw_store):
    desc = image_pb2.ImageDescriptor(encoding=image_pb2.ENCODING_RAW, shape=[65535, 65535, 65535],
                                     dtype=image_pb2.DATA_TYPE_INT16)
    with pytest.raises(grpc.RpcError) as caught:
        raw_store.Register(iter([store_pb2.RegisterRequest(
            header=store_pb2.RegisterHeader(image=desc))]), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as caught:
        raw_store.Register(iter([store_pb2.RegisterRequest(
            chunk=image_pb2.Chunk(data=b"x"))]), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    arr = np.zeros(10, np.uint8)
    with pytest.raises(grpc.RpcError) as caught:
        raw_store.Register(iter([
            store_pb2.RegisterRequest(header=store_pb2.RegisterHeader(
                image=H.raw_descriptor(arr))),
            store_pb2.RegisterRequest(chunk=image_pb2.Chunk(data=b"\1" * 10))]), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "checksum mismatch" in caught.value.details()


# -- retention, verify, backup over the API --------------------------------------------------

def test_purge_deletes_expired_images(client, server, store):
    img = client.store.register(np.arange(50, dtype=np.uint8), retention=3600)
    assert img.message.expires_at > img.message.created_at
    assert img.image_id not in client.store.purge(dry_run=True)["image_ids"]
    db = sqlite3.connect(server.config.data_dir / "catalog.sqlite3")
    with db:   # as if its retention period had passed
        db.execute("UPDATE images SET expires_at = 1 WHERE id = ?", (img.image_id,))
    db.close()
    dry = client.store.purge(dry_run=True)
    assert img.image_id in dry["image_ids"]
    report = client.store.purge()
    assert img.image_id in report["image_ids"] and report["freed_bytes"] > 0
    with pytest.raises(ServiceError) as gone:
        client.store.get(img)
    assert gone.value.code.name == "NOT_FOUND" and "image_id" in gone.value.details
    _assert_sound(server, store)


# -- the command line ------------------------------------------------------------------------

def _cli(capsys, *args) -> tuple[int, str, str]:
    code = main([*args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_command_line_tour(server, capsys, tmp_path):
    s = ("--server", server.address)
    folder = tmp_path / "study"
    (folder / "series").mkdir(parents=True)
    for k, part in enumerate(H.ct_series(3, patient="CLI-TOUR")):
        (folder / "series" / f"IM{k}.dcm").write_bytes(part)
    np.save(tmp_path / "vol.npy", np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    code, out, err = _cli(capsys, "store", "put", H.CT, str(folder), str(tmp_path / "vol.npy"),
                          "--modality", "CT", "-q", *s)
    assert code == 0, err
    ct_id, series_id, vol_id = out.split()
    code, out, _ = _cli(capsys, "store", "find", "--patient-id", "CLI-TOUR", "-q", *s)
    assert out.split() == [series_id]
    code, out, _ = _cli(capsys, "store", "find", "--patient-id", "CLI-TOUR", *s)
    assert series_id in out and "original" in out and "3x128x128" in out
    code, out, err = _cli(capsys, "process", f"id:{series_id}", "--op", "gaussian:sigma=1",
                          "--store", "-o", str(tmp_path / "smooth"), *s)
    assert code == 0 and "kept: derived image" in err, err
    derived = err.split("kept: derived image ")[1].split()[0]
    code, out, _ = _cli(capsys, "store", "find", "--source", series_id, "-q", *s)
    assert out.split() == [derived]
    code, _, err = _cli(capsys, "store", "get", derived, "-o", str(tmp_path / "again"), *s)
    assert code == 0 and len(list((tmp_path / "again").iterdir())) == 3
    code, _, _ = _cli(capsys, "store", "get", vol_id, "-o", str(tmp_path / "vol2.npy"), *s)
    np.testing.assert_array_equal(np.load(tmp_path / "vol2.npy"), np.load(tmp_path / "vol.npy"))
    code, _, _ = _cli(capsys, "store", "get", ct_id, "-o", str(tmp_path / "ct.dcm"), *s)
    assert (tmp_path / "ct.dcm").read_bytes() == H.data_of("CT_small.dcm")
    code, _, _ = _cli(capsys, "store", "get", series_id, "-o", str(tmp_path / "p.png"), *s)
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
    code, out, _ = _cli(capsys, "store", "info", vol_id, *s)
    assert json.loads(out)["metadata"]["modality"] == "CT"
    code, out, _ = _cli(capsys, "store", "verify", *s)
    assert code == 0 and "0 problem(s)" in out
    code, out, _ = _cli(capsys, "store", "purge", "--dry-run", *s)
    assert code == 0 and "would delete" in out
    code, out, _ = _cli(capsys, "store", "rm", vol_id, *s)
    assert code == 0 and f"deleted {vol_id}" in out
    code, _, err = _cli(capsys, "store", "get", vol_id, "-o", str(tmp_path / "x.npy"), *s)
    assert code == 4 and "NOT_FOUND" in err
    code, _, err = _cli(capsys, "store", "put", str(tmp_path / "missing.dcm"), *s)
    assert code == 2 and "no such file" in err


def test_put_reports_each_bad_path_and_goes_on(server, capsys, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for k, part in enumerate(H.mixed_series()):
        (mixed / f"IM{k}.dcm").write_bytes(part)
    code, out, err = _cli(capsys, "store", "put", str(mixed), H.MR, "--server", server.address)
    assert code == 3   # the server refused the mixed folder (INVALID_ARGUMENT); MR went on
    assert "2 different series" in err and "INVALID_ARGUMENT" in err
    assert "stored" in out and "MR" in out


def test_wire_compressed_frames_are_sent_as_stored(client):
    vol = np.random.default_rng(9).integers(0, 50, (3, 700, 700)).astype(np.int16)
    img = client.store.register(vol, compression="zstd")
    got = client.store.get(img, compression="blosc")
    np.testing.assert_array_equal(got.array, vol)
    assert wire.crc32(got.array) == img.message.crc32


def test_a_stored_volume_split_into_slabs(tight_client):
    vol = np.random.default_rng(10).integers(0, 1000, (80, 64, 64)).astype(np.int16)
    img = tight_client.store.register(vol)
    result = tight_client.process(img, ["gaussian:sigma=1"])
    assert result.header.slabs > 1
    expected = ndi.gaussian_filter(vol.astype(np.float32), 1.0, mode="nearest", truncate=4.0)
    np.testing.assert_allclose(result.array, expected, rtol=1e-5, atol=1e-3)


def test_the_store_is_listed_by_reflection(server):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [reply] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    assert "medcompute.v1.StoreService" in {s.name for s in reply.list_services_response.service}


def test_store_commands_json_quiet_and_exit_statuses(server, client, capsys, tmp_path):
    s = ("--server", server.address)
    a = client.store.register(np.full((3, 3), 1, np.uint8)).image_id
    b = client.store.register(np.full((3, 3), 2, np.uint8)).image_id
    code, out, _ = _cli(capsys, "store", "rm", a, "-q", *s)
    assert code == 0 and out.split() == [a]
    # The first id is gone: it is reported, the second still deleted, exit 4 (not found).
    code, out, err = _cli(capsys, "store", "rm", a, b, "--json", *s)
    assert code == 4 and "NOT_FOUND" in err
    [deleted] = json.loads(out)
    assert deleted["image_id"] == b and deleted["freed_bytes"] >= 0
    code, out, _ = _cli(capsys, "store", "purge", "--dry-run", "--json", *s)
    assert code == 0 and set(json.loads(out)) == {"image_ids", "freed_bytes", "blobs_removed"}
    code, out, _ = _cli(capsys, "store", "verify", "--json", *s)
    assert code == 0 and json.loads(out)["problems"] == []
    code, out, _ = _cli(capsys, "store", "backup", str(tmp_path / "copy"), "--json", *s)
    assert code == 0 and json.loads(out)["destination"] == str((tmp_path / "copy").resolve())


def test_store_verify_exits_7_on_a_damaged_blob(server_thread, capsys, tmp_path):
    from medcompute.server.config import ServerConfig

    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path / "data", workers=1)
    with server_thread(config) as own:
        code, out, _ = _cli(capsys, "store", "put", H.CT, "-q", "--server", own.address)
        assert code == 0 and out.strip()
        root = tmp_path / "data" / "blobs"
        blobs = [p for p in root.rglob("*")
                 if p.is_file() and "tmp" not in p.relative_to(root).parts]
        assert blobs
        damaged = blobs[0].read_bytes()
        blobs[0].write_bytes(bytes([damaged[0] ^ 0xFF]) + damaged[1:])
        code, out, _ = _cli(capsys, "store", "verify", "--json", "--server", own.address)
        assert code == 7
        assert json.loads(out)["problems"][0]["problem"]


def test_a_split_volume_with_a_dicom_series_result_is_written_in_parts(client, tight,
                                                                        tight_client, tmp_path):
    # 40 slices of 128x128 over 64 KiB: slabs, then each of the two workers writes the
    # files of half the slices; the series is the one written whole.
    folder = tmp_path / "series"
    folder.mkdir()
    for k, part in enumerate(H.ct_series(40)):
        (folder / f"IM{k}.dcm").write_bytes(part)
    whole = client.process(client.store.register(folder), ["gaussian:sigma=1"],
                           output="dicom_series")
    split = tight_client.process(tight_client.store.register(folder), ["gaussian:sigma=1"],
                                 output="dicom_series")
    assert split.header.slabs > 1 and whole.header.slabs <= 1
    a = [pydicom.dcmread(io.BytesIO(b)) for b in split.files]
    b = [pydicom.dcmread(io.BytesIO(b)) for b in whole.files]
    assert len(a) == 40 and len({ds.SeriesInstanceUID for ds in a}) == 1
    assert [ds.InstanceNumber for ds in a] == list(range(1, 41))
    assert len({ds.SOPInstanceUID for ds in a}) == 40
    assert [ds.PixelData for ds in a] == [ds.PixelData for ds in b]
    assert not list((tight.config.data_dir).rglob("*.part*"))


@pytest.mark.parametrize(("changes", "attribute"), [
    ({"StudyInstanceUID": None}, "StudyInstanceUID"),
    ({"PixelSpacing": [-1, 0]}, "PixelSpacing"),
])
def test_register_refuses_what_the_dicom_port_refuses(client, store, tmp_path, changes,
                                                      attribute):
    """The one instance validator over gRPC: INVALID_ARGUMENT naming the file and the
    attribute, and nothing kept (as C-STORE answers C000, test_dicom_qr.py)."""
    path = tmp_path / "refused.dcm"
    path.write_bytes(H.changed_ct(**changes))
    before = _blob_files(store)
    with pytest.raises(ServiceError) as caught:
        client.store.register(str(path))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details.startswith(f"header.image.dicom[0]: {attribute} (")
    assert _blob_files(store) == before
