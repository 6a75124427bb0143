"""Compressed versions of stored images, against a real store (SQLite catalog, blob files)
with the worker functions run in threads: lossless versions bit-exact, lossy versions
within their recorded error and smaller by their configured ratio, labelled lossy in
DICOM, made once, cut to lower resolution levels; refusals name the field."""

from __future__ import annotations

import copy
import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medcompute.server.errors import FailedPrecondition, InvalidArgument
from medcompute.server.store.versions import VersionSpec, versions_of
from medcompute.server.worker.version_tasks import LOSSLESS_SYNTAX, LOSSY_SYNTAX
from tests import store_helpers as H

pytestmark = pytest.mark.timeout(120)
NONE = H.coder()   # COMPRESSION_NONE


def synthetic_series(bits: int, n: int = 3) -> list[bytes]:
    """A synthetic 16-bit volume (``bits`` stored bits, unsigned): smooth anatomy-like
    ramps and blobs plus seeded noise, as ``n`` CT slices."""
    rng = np.random.default_rng(bits)
    base = pydicom.dcmread(H.CT)
    y, x = np.mgrid[0:128, 0:128]
    top = (1 << bits) - 1
    uid = generate_uid()
    parts = []
    for k in range(n):
        field = (0.4 + 0.3 * np.sin(x / 9.0 + k) * np.cos(y / 13.0)) * top
        field += rng.normal(0, top * 0.01, field.shape)
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), uid
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
        ds.RescaleIntercept = 0
        ds.ImagePositionPatient = [0, 0, 2.0 * k]
        ds.InstanceNumber = k + 1
        ds.PixelData = np.clip(field, 0, top).astype(np.uint16).tobytes()
        parts.append(H.encode(ds))
    return parts


CASES = {
    "CT": lambda: [H.data_of("CT_small.dcm")],
    "MR": lambda: [H.data_of("MR_small.dcm")],
    "JPEG-LS": lambda: [H.data_of("MR_small_jpeg_ls_lossless.dcm")],
    "RLE": lambda: [H.data_of("MR_small_RLE.dcm")],
    "synthetic 12-bit": lambda: synthetic_series(12),
    "synthetic 16-bit": lambda: synthetic_series(16),
}


async def _register(store, parts, owner="alice"):
    record, _, _ = await H.register(store, H.dicom_descriptor(parts),
                                    H.stream(H.payloads(b"".join(parts))), owner=owner)
    return record


async def _files(payloads, sizes) -> list[bytes]:
    data = b"".join([p async for p in payloads])
    out, at = [], 0
    for n in sizes:
        out.append(data[at:at + n])
        at += n
    return out


def _pixels(data: bytes) -> np.ndarray:
    return pydicom.dcmread(io.BytesIO(data)).pixel_array


@pytest.mark.parametrize("case", list(CASES))
def test_versions_bit_exact_or_within_their_recorded_error(tmp_path, case):
    parts = CASES[case]()

    async def body(store):
        record = await _register(store, parts)
        originals = [_pixels(p) for p in parts]
        raw = sum(a.size * pydicom.dcmread(io.BytesIO(p)).BitsAllocated // 8
                  for a, p in zip(originals, parts))
        lossless = store.versions.resolve("lossless")
        version, info, payloads = await store.versions.fetch(record, lossless, 0, NONE)
        files = await _files(payloads, info.file_sizes)
        assert version.lossless and version.max_error == 0 and version.psnr_db is None
        for data, original in zip(files, originals):
            ds = pydicom.dcmread(io.BytesIO(data))
            assert ds.file_meta.TransferSyntaxUID == LOSSLESS_SYNTAX
            np.testing.assert_array_equal(ds.pixel_array, original)
        for name in ("review", "thumbnail"):
            spec = store.versions.resolve(name)
            version, info, payloads = await store.versions.fetch(record, spec, 0, NONE)
            files = await _files(payloads, info.file_sizes)
            coded = 0
            worst = 0.0
            for data, original, part in zip(files, originals, parts):
                ds = pydicom.dcmread(io.BytesIO(data))
                source = pydicom.dcmread(io.BytesIO(part))
                assert ds.file_meta.TransferSyntaxUID == LOSSY_SYNTAX
                assert ds.LossyImageCompression == "01"
                methods = ds.LossyImageCompressionMethod
                assert (methods if isinstance(methods, str) else methods[-1]) == "ISO_15444_1"
                assert ds.SOPInstanceUID != source.SOPInstanceUID
                assert ds.StudyInstanceUID == source.StudyInstanceUID
                coded += sum(len(f) for f in pydicom.encaps.generate_frames(
                    ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1) or 1)))
                worst = max(worst, float(np.abs(ds.pixel_array.astype(float) - original).max()))
            assert raw / coded >= spec.ratio * 0.999
            assert version.ratio == pytest.approx(raw / coded, rel=0.01)
            assert 0 < worst <= version.max_error
            assert version.psnr_db is not None and version.psnr_db > 15
        return await store.get(record.id, owner="alice")

    kept = H.with_store(tmp_path, body)
    made = {v.name: v for v in versions_of(kept)}
    assert set(made) == {"lossless", "review", "thumbnail"}
    assert made["thumbnail"].stored_bytes < made["review"].stored_bytes
    assert kept.stored_bytes == sum(b.size for b in kept.blobs)


def test_a_version_is_made_once_and_found_by_purpose(tmp_path):
    calls = []

    async def counting(fn, *args, **kwargs):
        calls.append(fn.__name__)
        return await H.in_threads(fn, *args, **kwargs)

    async def body(store):
        store.runner = counting
        record = await _register(store, [H.data_of("CT_small.dcm")])
        calls.clear()
        spec = store.versions.resolve("archive")
        assert spec == VersionSpec("lossless", "archive")
        import asyncio
        first, second = await asyncio.gather(store.versions.get(record, spec),
                                             store.versions.get(record, spec))
        again = await store.versions.get(await store.get(record.id, owner="alice"), spec)
        assert first.digest == second.digest == again.digest
        assert calls == ["make_version"]
        assert store.versions.resolve("") is None and store.versions.resolve("original") is None

    H.with_store(tmp_path, body)


def test_configured_versions_replace_the_defaults(tmp_path):
    async def body(store):
        record = await _register(store, [H.data_of("MR_small.dcm")])
        spec = store.versions.resolve("key")
        version = await store.versions.get(record, spec)
        assert version.configured_ratio == 25 and version.ratio >= 25
        with pytest.raises(InvalidArgument, match="expected a version .original, key.") as e:
            store.versions.resolve("review")
        assert e.value.field == "version"

    H.with_store(tmp_path, body, versions=(VersionSpec("key", "teaching", 25.0),))


def downsampled(image: np.ndarray, level: int) -> np.ndarray:
    """``image`` downsampled by ``2**level`` per axis: the mean of the ``2**level`` square
    around each kept sample (rows and columns ``0, 2**level, ...``, as JPEG 2000 keeps)."""
    from scipy.ndimage import uniform_filter

    f = 2 ** level
    return uniform_filter(image.astype(float), size=f, mode="nearest")[::f, ::f]


@pytest.mark.parametrize("name", ["lossless", "review"])
def test_resolution_levels_send_a_reduced_image_of_only_the_bytes_it_needs(tmp_path, name):
    from medcompute.server.dicom import j2k

    async def body(store):
        parts = synthetic_series(12, n=2)
        record = await _register(store, parts)
        spec = store.versions.resolve(name)
        full_version, info, payloads = await store.versions.fetch(record, spec, 0, NONE)
        full = await _files(payloads, info.file_sizes)
        assert full_version.resolutions == 6
        original = _pixels(parts[0]).astype(float)
        sizes, errors = [], []
        for level in (1, 2, 3):
            _, info, payloads = await store.versions.fetch(record, spec, level, NONE)
            files = await _files(payloads, info.file_sizes)
            sizes.append(info.size)
            ds = pydicom.dcmread(io.BytesIO(files[0]))
            assert ds.LossyImageCompression == "01"
            side = 128 // 2 ** level
            assert (ds.Rows, ds.Columns) == (side, side)
            assert [float(v) for v in ds.PixelSpacing] == pytest.approx(
                [float(v) * 2 ** level for v in pydicom.dcmread(io.BytesIO(parts[0])).PixelSpacing])
            small = ds.pixel_array
            assert small.shape == (side, side)
            # The same packets as the full-size prefix: for the reversible 5/3 wavelet its
            # even samples are the low-pass coefficients themselves.
            frame = next(pydicom.encaps.generate_frames(
                pydicom.dcmread(io.BytesIO(full[0])).PixelData, number_of_frames=1))
            upsampled = j2k.decode_frame(j2k.prefix(frame, level))
            if name == "lossless":
                np.testing.assert_array_equal(small, upsampled[::2 ** level, ::2 ** level])
            errors.append(float(np.abs(small - downsampled(original, level)).mean()))
        assert sum(len(f) for f in full) > sizes[0] > sizes[1] > sizes[2]
        assert max(errors) < 0.03 * 4095, errors          # close to the downsampled original
        with pytest.raises(InvalidArgument, match="levels 0 to 5; got 6") as e:
            await store.versions.fetch(record, spec, 6, NONE)
        assert e.value.field == "resolution_level"

    H.with_store(tmp_path, body)


def test_refusals_name_the_field(tmp_path):
    async def body(store):
        array = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
        raw, _, _ = await H.register(store, H.raw_descriptor(array),
                                     H.stream(H.payloads(array.tobytes())), owner="alice")
        with pytest.raises(FailedPrecondition, match="dtype is float32") as e:
            await store.versions.get(raw, store.versions.resolve("review"))
        assert e.value.field == "version"
        with pytest.raises(InvalidArgument, match="got 'sharp'") as e:
            store.versions.resolve("sharp")
        assert e.value.field == "version"
        tiny = await _register(store,                                  # 50 x 10
                               [H.with_uids(H.data_of("JPEGLSNearLossless_16.dcm"))])
        with pytest.raises(FailedPrecondition, match="cannot be encoded as JPEG 2000"):
            await store.versions.get(tiny, store.versions.resolve("lossless"))
        assert versions_of(await store.get(tiny.id, owner="alice")) == []
        assert list(store.blobs.tmp.iterdir()) == []

    H.with_store(tmp_path, body)


def test_a_version_of_an_inline_image_is_refused():
    from medcompute.proto.v1 import image_pb2, processing_pb2
    from medcompute.server.api.requests import HEADER, process_request
    from medcompute.server.config import ServerConfig

    array = np.zeros((4, 4), dtype=np.uint8)
    header = processing_pb2.ProcessHeader(
        input=image_pb2.ImageSource(inline=H.raw_descriptor(array), version="review"))
    with pytest.raises(InvalidArgument, match="give image_id, or leave version empty") as e:
        with HEADER.placed():
            process_request(header, max_image_bytes=ServerConfig().max_image_bytes)
    assert e.value.field == "header.input.version"


def test_make_versions_makes_every_version_after_registration(tmp_path):
    async def body(store):
        record = await _register(store, [H.data_of("MR_small.dcm")])
        again = await _register(store, [H.data_of("MR_small.dcm")])   # existing: nothing new
        assert again.id == record.id
        await store.versions.wait_background()
        kept = await store.get(record.id, owner="alice")
        assert [v.name for v in versions_of(kept)] == ["lossless", "review", "thumbnail"]
        tiny = await _register(store, [H.with_uids(H.data_of("JPEGLSNearLossless_16.dcm"))])
        await store.versions.wait_background()                 # logged, not raised
        assert versions_of(await store.get(tiny.id, owner="alice")) == []
        return True

    assert H.with_store(tmp_path, body, make_versions=True)


# -- conformance: every version's objects pass dciodvfy ---------------------------------


@pytest.mark.parametrize("case", ["CT", "MR", "synthetic 12-bit"])
def test_versions_add_no_validator_error_to_their_original(tmp_path, case):
    from tests import dciodvfy

    parts = CASES[case]()
    had = set().union(*(dciodvfy.check(p).errors for p in parts))

    async def body(store):
        record = await _register(store, parts)
        for name in ("lossless", "review", "thumbnail"):
            spec = store.versions.resolve(name)
            for level in (0, 1):
                _, info, payloads = await store.versions.fetch(record, spec, level, NONE)
                for data in await _files(payloads, info.file_sizes):
                    report = dciodvfy.check(data)
                    assert report.errors - had == set(), f"{name}@{level}:\n{report.text}"

    H.with_store(tmp_path, body)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16"])
def test_a_raw_arrays_versions_pass_the_validator_and_give_its_values_back(tmp_path, dtype):
    from medcompute.client.store import version_voxels
    from medcompute.server.worker.version_tasks import _write, raw_dataset
    from tests import dciodvfy

    info = np.iinfo(dtype)
    y, x = np.mgrid[0:96, 0:96]
    ramp = (np.sin(x / 7.0)[None] * np.cos(y / 11.0)[None] * np.arange(1, 3)[:, None, None])
    array = (info.min + (ramp + 2) / 4 * (int(info.max) - int(info.min))).astype(dtype)
    array[0, 0, :2] = info.min, info.max  # the extremes of the dtype
    made = dciodvfy.check(_write(raw_dataset(array, uid_source="raw")))
    assert made.errors == set(), made.text
    assert made.iod == ("MultiframeGrayscaleByteSCImage" if dtype == "uint8"
                        else "MultiframeGrayscaleWordSCImage")

    async def body(store):
        record, _, _ = await H.register(store, H.raw_descriptor(array),
                                        H.stream(H.payloads(array.tobytes())), owner="alice")
        for name in ("lossless", "review"):
            spec = store.versions.resolve(name)
            for level in (0, 1):
                _, got, payloads = await store.versions.fetch(record, spec, level, NONE)
                files = await _files(payloads, got.file_sizes)
                for data in files:
                    report = dciodvfy.check(data)
                    assert report.errors == set(), f"{name}@{level}:\n{report.text}"
                    ds = pydicom.dcmread(io.BytesIO(data))
                    assert ds.PixelRepresentation == 0  # the IOD's only value
                    assert ds.BurnedInAnnotation == "NO" and ds.PresentationLUTShape
                    assert "PatientName" in ds and not ds.PatientName   # type 2: unknown
                voxels = version_voxels(files, array.shape, array.dtype)
                if name == "lossless" and level == 0:
                    np.testing.assert_array_equal(voxels, array)
                elif level == 0:  # lossy: close, not shifted by the stored offset
                    span = float(info.max) - float(info.min)
                    assert np.abs(voxels.astype(float) - array).mean() < 0.05 * span

    H.with_store(tmp_path, body)
