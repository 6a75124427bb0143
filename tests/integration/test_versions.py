"""Compressed versions through the real server and a real Dask cluster: Get by name and
by purpose, resolution levels, the versions listed with the image, refusals over gRPC with
the field named, and `medcompute store get --version` on the command line."""

from __future__ import annotations

import grpc
import numpy as np
import pydicom
import pytest

from medcompute.client import ServiceError
from medcompute.client.cli import main
from medcompute.proto.v1 import store_pb2, store_pb2_grpc
from tests import store_helpers as H

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def raw_store(server):
    channel = grpc.insecure_channel(server.address)
    yield store_pb2_grpc.StoreServiceStub(channel)
    channel.close()


def test_versions_over_grpc_by_name_and_purpose(client):
    mr = client.store.register(H.MR)
    original = pydicom.dcmread(H.MR).pixel_array
    assert mr.versions == {}
    lossless = client.store.get(mr, version="archive")        # by purpose
    assert lossless.version["name"] == "lossless" and lossless.version["lossless"]
    np.testing.assert_array_equal(pydicom.dcmread(pydicom.filebase.DicomBytesIO(
        lossless.files[0])).pixel_array, original)
    review = client.store.get(mr, version="review")
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(review.files[0]))
    assert ds.LossyImageCompression == "01"
    error = np.abs(ds.pixel_array.astype(float) - original).max()
    assert 0 < error <= review.version["max_error"]
    assert review.version["compression_ratio"] >= review.version["configured_ratio"] == 10
    cut = client.store.get(mr, version="review", resolution_level=2)
    assert cut.resolution_level == 2 and len(cut.files[0]) < len(review.files[0])
    listed = client.store.info(mr).versions
    assert set(listed) == {"lossless", "review"}
    assert int(listed["review"]["stored_bytes"]) == len(review.files[0])
    default = client.store.get(mr, dicom=True)                 # the default: the original
    assert default.version is None and default.files == [H.data_of("MR_small.dcm")]


def test_version_refusals_name_the_field(client, raw_store):
    ct = client.store.register(H.CT)
    array = client.store.register(np.zeros((64, 64), dtype=np.float32))
    cases = [
        (store_pb2.GetRequest(image_id=ct.image_id, version="sharp"),
         grpc.StatusCode.INVALID_ARGUMENT, "version: expected a version (original, lossless"),
        (store_pb2.GetRequest(image_id=ct.image_id, version="review",
                              format=store_pb2.STORED_FORMAT_VOXELS),
         grpc.StatusCode.INVALID_ARGUMENT, "format: a version is sent as its DICOM files"),
        (store_pb2.GetRequest(image_id=ct.image_id, resolution_level=1),
         grpc.StatusCode.INVALID_ARGUMENT, "resolution_level: resolution levels are served"),
        (store_pb2.GetRequest(image_id=ct.image_id, version="review", resolution_level=9),
         grpc.StatusCode.INVALID_ARGUMENT, "resolution_level: this version has resolution"),
        (store_pb2.GetRequest(image_id=array.image_id, version="review"),
         grpc.StatusCode.FAILED_PRECONDITION,
         "version: versions of a raw array are made of 8- or 16-bit integers (uint8, int8, "
         "uint16, int16); this image's dtype is float32"),
    ]
    for request, code, message in cases:
        with pytest.raises(grpc.RpcError) as caught:
            list(raw_store.Get(request, timeout=60))
        assert caught.value.code() == code
        assert caught.value.details().startswith(message), caught.value.details()
    with pytest.raises(ServiceError) as caught:
        client.store.get(ct, version="sharp")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_store_get_version_on_the_command_line(server, capsys, tmp_path):
    s = ("--server", server.address)
    assert main(["store", "put", H.CT, "-q", *s]) == 0
    ct_id = capsys.readouterr().out.strip()
    out = tmp_path / "review.dcm"
    assert main(["store", "get", ct_id, "--version", "review", "-o", str(out), *s]) == 0
    err = capsys.readouterr().err
    assert "version review (review): compression ratio" in err and "PSNR" in err
    assert pydicom.dcmread(out).LossyImageCompression == "01"
    assert main(["store", "get", ct_id, "--version", "lossless", "--level", "1",
                 "-o", str(tmp_path / "l1.dcm"), *s]) == 0
    assert "resolution level 1" in capsys.readouterr().err
    assert main(["store", "get", ct_id, "--version", "review", "-o",
                 str(tmp_path / "x.npy"), *s]) != 0
    assert "written as DICOM files" in capsys.readouterr().err


def test_raw_volume_versions_as_voxels_on_the_command_line(server, client, capsys, tmp_path):
    volume = H.synthetic_volume("int16", shape=(2, 64, 64), seed=5)
    image = client.store.register(volume)
    s = ("--server", server.address)
    exact, review = tmp_path / "lossless.npy", tmp_path / "review.npy"
    assert main(["store", "get", image.image_id, "--version", "lossless", "-o", str(exact),
                 *s]) == 0
    assert "bit-exact" in capsys.readouterr().err
    np.testing.assert_array_equal(np.load(exact), volume)
    assert main(["store", "get", image.image_id, "--version", "review", "-o", str(review),
                 *s]) == 0
    assert "version review (review)" in capsys.readouterr().err
    lossy = np.load(review)
    assert lossy.shape == volume.shape and lossy.dtype == np.int16
    recorded = client.store.info(image).versions["review"]
    error = np.abs(lossy.astype(float) - volume).max()
    assert 0 < error <= recorded["max_error"]
    assert recorded["compression_ratio"] >= recorded["configured_ratio"] == 10
    fetched = client.store.get(image, version="thumbnail")
    assert fetched.array.shape == volume.shape and fetched.files
    small = tmp_path / "small.npy"
    assert main(["store", "get", image.image_id, "--version", "lossless", "--level", "2",
                 "-o", str(small), *s]) == 0
    assert "resolution level 2" in capsys.readouterr().err
    reduced = np.load(small)
    assert reduced.shape == (2, 16, 16) and reduced.dtype == np.int16
    means = volume.astype(float).reshape(2, 16, 4, 16, 4).mean(axis=(2, 4))
    assert np.abs(reduced - means).mean() < 0.05 * (float(volume.max()) - float(volume.min()))
    cut = client.store.get(image, version="lossless", resolution_level=2)
    assert sum(map(len, cut.files)) < sum(map(len, client.store.get(
        image, version="lossless").files))


def test_processing_reads_the_lossless_voxels_unless_a_version_is_named(client, tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for k, part in enumerate(H.ct_series(2, patient="VERSIONS")):
        (folder / f"IM{k}.dcm").write_bytes(part)
    series = client.store.register(folder)
    ops = ["gaussian:sigma=1"]
    original = client.process(series, ops)
    inline_original = client.process(folder, ops)
    np.testing.assert_array_equal(original.array, inline_original.array)
    review = client.store.get(series, version="review")
    (tmp_path / "review").mkdir()
    for k, data in enumerate(review.files):
        (tmp_path / "review" / f"IM{k}.dcm").write_bytes(data)
    by_version = client.process("id:" + series.image_id + "@review", ops)
    inline_review = client.process(tmp_path / "review", ops)
    np.testing.assert_array_equal(by_version.array, inline_review.array)
    assert np.abs(by_version.array - original.array).max() > 0          # it read the lossy one
    by_purpose = client.process("id:" + series.image_id + "@archive", ops)   # lossless
    np.testing.assert_array_equal(by_purpose.array, original.array)
    kept = client.process("id:" + series.image_id + "@review", ops, store_result=True)
    again = client.process(series, ops, store_result=True)
    assert kept.stored_image_id != again.stored_image_id      # reuse tells the inputs apart
    raw = client.store.register(np.zeros((8, 8), dtype=np.uint8))
    for image, code, message in [
        ("id:" + series.image_id + "@sharp", grpc.StatusCode.INVALID_ARGUMENT,
         "header.input.version: expected a version"),
        ("id:" + raw.image_id + "@review", grpc.StatusCode.FAILED_PRECONDITION,
         "header.input.version: versions are made of DICOM files"),
    ]:
        with pytest.raises(ServiceError) as caught:
            client.process(image, ops)
        assert caught.value.code == code and caught.value.details.startswith(message)


def test_a_series_too_small_for_versions_is_refused_with_its_size(client):
    from pathlib import Path

    folder = Path(H.CT).parent / "dicomdirtests" / "98892001" / "CT5N"     # 16 x 16 slices
    series = client.store.register(str(folder))
    with pytest.raises(ServiceError) as caught:
        client.store.get(series, version="review")
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details.startswith(
        "version: the pixel data cannot be encoded as JPEG 2000: its frames are 16 x 16 "
        "pixels (rows x columns), and versions need at least 32 x 32"), caught.value.details
