"""Versions of images registered as raw arrays (synthetic, seeded 16-bit volumes), against
a real store with the worker functions run in threads: the lossless version bit-exact,
the lossy ones within their recorded error and smaller by their configured ratio, each
slice a JPEG 2000 frame; dtypes the codec cannot take are refused naming the dtype."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from medcompute.client.store import version_voxels
from medcompute.server.errors import FailedPrecondition
from medcompute.server.store.versions import versions_of
from medcompute.server.worker.version_tasks import LOSSLESS_SYNTAX, LOSSY_SYNTAX
from tests import store_helpers as H

pytestmark = pytest.mark.timeout(120)
NONE = H.coder()   # COMPRESSION_NONE


async def register(store, array, owner="alice"):
    record, _, _ = await H.register(store, H.raw_descriptor(array),
                                    H.stream(H.payloads(array.tobytes())), owner=owner)
    return record


async def fetched_files(store, record, spec, level=0):
    version, info, payloads = await store.versions.fetch(record, spec, level, NONE)
    data = b"".join([p async for p in payloads])
    files, at = [], 0
    for n in info.file_sizes:
        files.append(data[at:at + n])
        at += n
    assert sum(info.file_sizes) == info.size == len(data)
    return version, files


def coded_bytes(files) -> int:
    total = 0
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        total += sum(len(f) for f in pydicom.encaps.generate_frames(
            ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    return total


@pytest.mark.parametrize("dtype", ["uint16", "int16"])
def test_raw_volume_versions_bit_exact_or_within_their_recorded_error(tmp_path, dtype):
    volume = H.synthetic_volume(dtype)

    async def body(store):
        record = await register(store, volume)
        version, files = await fetched_files(store, record, store.versions.resolve("lossless"))
        assert version.lossless and version.max_error == 0 and version.psnr_db is None
        assert len(files) == 1
        ds = pydicom.dcmread(io.BytesIO(files[0]))
        assert ds.file_meta.TransferSyntaxUID == LOSSLESS_SYNTAX
        assert int(ds.NumberOfFrames) == volume.shape[0]
        # no patient data: the type 2 attributes the IOD requires are there, empty
        assert ds["PatientName"].value in (None, "") and ds["PatientID"].value in (None, "")
        exact = version_voxels(files, record.shape, np.dtype(record.dtype))
        assert exact.dtype == volume.dtype
        np.testing.assert_array_equal(exact, volume)
        for name in ("review", "thumbnail"):
            spec = store.versions.resolve(name)
            version, files = await fetched_files(store, record, spec)
            ds = pydicom.dcmread(io.BytesIO(files[0]))
            assert ds.file_meta.TransferSyntaxUID == LOSSY_SYNTAX
            assert ds.LossyImageCompression == "01"
            lossy = version_voxels(files, record.shape, np.dtype(record.dtype))
            assert lossy.shape == volume.shape and lossy.dtype == volume.dtype
            worst = float(np.abs(lossy.astype(float) - volume).max())
            assert 0 < worst <= version.max_error
            assert volume.nbytes / coded_bytes(files) >= spec.ratio
            assert version.ratio == pytest.approx(volume.nbytes / coded_bytes(files), rel=0.01)
        return await store.get(record.id, owner="alice")

    kept = H.with_store(tmp_path, body)
    made = {v.name: v for v in versions_of(kept)}
    assert set(made) == {"lossless", "review", "thumbnail"}
    assert made["thumbnail"].stored_bytes < made["review"].stored_bytes < \
        made["lossless"].stored_bytes
    assert kept.stored_bytes == sum(b.size for b in kept.blobs)


def test_a_raw_2d_image_and_8_bit_volume_get_versions(tmp_path):
    image = H.synthetic_volume("uint16", shape=(1, 64, 48), seed=3)[0]
    bytes_volume = H.synthetic_volume("int8", shape=(2, 40, 40), seed=4)

    async def body(store):
        for array in (image, bytes_volume):
            record = await register(store, array)
            _, files = await fetched_files(store, record, store.versions.resolve("lossless"))
            np.testing.assert_array_equal(
                version_voxels(files, record.shape, np.dtype(record.dtype)), array)
        return True

    assert H.with_store(tmp_path, body)


@pytest.mark.parametrize("dtype", ["float32", "uint32", "int32", "float64"])
def test_dtypes_jpeg_2000_cannot_take_are_refused_naming_the_dtype(tmp_path, dtype):
    array = np.arange(64 * 64).reshape(64, 64).astype(dtype)

    async def body(store):
        record = await register(store, array)
        with pytest.raises(FailedPrecondition, match=f"this image's dtype is {dtype}") as e:
            await store.versions.get(record, store.versions.resolve("review"))
        assert e.value.field == "version"
        assert versions_of(await store.get(record.id, owner="alice")) == []
        assert list(store.blobs.tmp.iterdir()) == []
        return True

    assert H.with_store(tmp_path, body)


def test_make_versions_makes_a_raw_volume_s_versions_after_registration(tmp_path):
    async def body(store):
        record = await register(store, H.synthetic_volume("uint16", shape=(2, 96, 96)))
        refused = await register(store, np.zeros((48, 48), dtype=np.float32))
        await store.versions.wait_background()
        made = versions_of(await store.get(record.id, owner="alice"))
        assert [v.name for v in made] == ["lossless", "review", "thumbnail"]
        assert versions_of(await store.get(refused.id, owner="alice")) == []
        return True

    assert H.with_store(tmp_path, body, make_versions=True)


@pytest.mark.parametrize("name", ["lossless", "review"])
def test_a_raw_volume_at_a_lower_resolution_level_is_reduced_per_axis(tmp_path, name):
    from scipy.ndimage import uniform_filter

    volume = H.synthetic_volume("uint16", shape=(2, 96, 80), seed=6)

    async def body(store):
        record = await register(store, volume)
        spec = store.versions.resolve(name)
        _, full = await fetched_files(store, record, spec)
        for level in (1, 2):
            version, files = await fetched_files(store, record, spec, level)
            assert sum(map(len, files)) < sum(map(len, full))
            small = version_voxels(files, record.shape, np.dtype(record.dtype))
            f = 2 ** level
            assert small.shape == (2, 96 // f, 80 // f) and small.dtype == np.uint16
            expected = uniform_filter(volume.astype(float), size=(1, f, f),
                                      mode="nearest")[:, ::f, ::f]
            span = float(volume.max()) - float(volume.min())
            assert float(np.abs(small - expected).mean()) < 0.02 * span
        return True

    assert H.with_store(tmp_path, body)
