"""Tests of medcompute.server.dicom.read (headers, pixels, refusals) and of the derived series
medcompute.server.dicom.write writes from the same parsed volume.

Every DICOM file here is one of pydicom's bundled test files, or made from one.
"""

from __future__ import annotations

import copy
import io
import logging
import pickle

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from medcompute.server.dicom import read as dicom
from medcompute.server.dicom.read import decode, read_info
from medcompute.server.dicom.volume import DicomInfo
from medcompute.server.dicom.write import derived_uid, write_derived
from medcompute.server.errors import InvalidArgument

NAME, PID = "SENTINEL^PATIENT", "SENTINELID"
CT_SPACING = 0.661468
TILT = np.deg2rad(20.0)


def _path(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None, f"{name} is not bundled with pydicom"
    return path


def _bytes(name: str) -> bytes:
    with open(_path(name), "rb") as f:
        return f.read()


def _dataset(name: str) -> Dataset:
    ds = pydicom.dcmread(_path(name), force=True)
    ds.PatientName, ds.PatientID = NAME, PID
    return ds


def _encode(ds: Dataset, **kwargs) -> bytes:
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, **kwargs)
    return out.getvalue()


def _refused(parts, field: str, *words: str, call=read_info, **kwargs) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        call(parts, **kwargs)
    error = caught.value
    assert error.field == field, error.details
    for word in words:
        assert word in error.message, error.details
    for secret in (NAME, PID, "SENTINEL"):
        assert secret not in error.details
    return error


def _ct_variant(**changes) -> bytes:
    ds = _dataset("CT_small.dcm")
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return _encode(ds)


def _series(z, *, orientation=(1, 0, 0, 0, 1, 0), geometry=True, series_uid=None):
    """CT_small copies at offsets `z` along the slice normal; slice i holds stored + 10 * i."""
    base = _dataset("CT_small.dcm")
    stored = base.pixel_array
    normal = np.cross(orientation[:3], orientation[3:])
    origin = np.array(base.ImagePositionPatient, dtype=float)
    uid = series_uid or generate_uid()
    parts = []
    for i, offset in enumerate(z):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), uid
        ds.InstanceNumber = i + 1
        ds.PixelData = (stored + 10 * i).astype(np.int16).tobytes()
        if geometry:
            ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
            ds.ImagePositionPatient = [f"{v:.4f}" for v in origin + offset * normal]
        else:
            del ds.ImagePositionPatient, ds.ImageOrientationPatient
        parts.append(_encode(ds))
    return parts, stored


# -- reading -------------------------------------------------------------------------------

ALL_GRAYSCALE = [
    "CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
    "MR_small_padded.dcm", "JPEG2000.dcm", "JPGExtended.dcm", "rtdose.dcm", "rtdose_rle.dcm",
    "liver_1frame.dcm", "image_dfl.dcm",
]


@pytest.mark.parametrize("name", ALL_GRAYSCALE)
def test_read_info_reports_what_decode_returns(name):
    info = read_info([_bytes(name)])
    pixels, decoded = decode([memoryview(_bytes(name))])
    assert isinstance(info, DicomInfo)
    assert decoded == info
    assert pixels.shape == info.shape and pixels.dtype == info.dtype
    assert info.n_parts == 1 and info.order == (0,)
    assert info.spacing is None or len(info.spacing) == len(info.shape)


@pytest.mark.parametrize("name", [
    "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_padded.dcm",
])
def test_compressed_and_other_encodings_decode_like_the_plain_file(name):
    expected, _ = decode([_bytes("MR_small.dcm")])
    pixels, info = decode([_bytes(name)])
    np.testing.assert_array_equal(pixels, expected)
    assert info.dtype == np.int16 and info.spacing == (0.3125, 0.3125) and info.modality == "MR"


def test_jpeg_extended_and_jpeg2000_decode():
    extended, info = decode([_bytes("JPGExtended.dcm")])
    assert info.shape == (1024, 256) and info.dtype == np.uint16
    assert 0 <= extended.min() and extended.max() < 2**12  # 12 bits stored
    j2k, info = decode([_bytes("JPEG2000.dcm")])
    assert info.shape == (1024, 256) and info.dtype == np.int16 and j2k.std() > 0


def test_ct_rescale_gives_hounsfield_units():
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    expected = ds.pixel_array.astype(np.int64) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    pixels, info = decode([_bytes("CT_small.dcm")])
    # 16 signed bits stored, shifted by -1024, no longer fit int16
    assert info.dtype == np.int32 and info.rescaled and info.stored_dtype == np.int16
    np.testing.assert_array_equal(pixels, expected)
    assert info.spacing == (CT_SPACING, CT_SPACING) and info.modality == "CT"


@pytest.mark.parametrize("changes, dtype", [
    ({"BitsStored": 12, "HighBit": 11}, np.int16),
    ({"PixelRepresentation": 0, "BitsStored": 12, "HighBit": 11}, np.int16),
    ({"PixelRepresentation": 0}, np.int32),
    ({"RescaleIntercept": 0}, np.int16),
    ({"PixelRepresentation": 0, "RescaleIntercept": 0}, np.uint16),
    ({"RescaleSlope": 2.5}, np.float32),
    ({"RescaleIntercept": -0.5}, np.float32),
])
def test_output_dtype_rule(changes, dtype):
    part = _ct_variant(**changes)
    info = read_info([part])
    pixels, _ = decode([part])
    assert info.dtype == dtype and pixels.dtype == dtype
    ds = pydicom.dcmread(io.BytesIO(part))
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(pixels, expected, rtol=1e-6)


def test_rt_dose_frames_are_dose_in_gray():
    ds = pydicom.dcmread(_path("rtdose.dcm"))
    pixels, info = decode([_bytes("rtdose.dcm")])
    assert info.shape == (15, 10, 10) and info.dtype == np.float32
    assert info.spacing == (5.0, 10.0, 10.0)  # GridFrameOffsetVector, PixelSpacing
    np.testing.assert_allclose(pixels, ds.pixel_array * float(ds.DoseGridScaling), rtol=1e-6)


def test_enhanced_multiframe_uses_functional_groups():
    ds = _dataset("CT_small.dcm")
    stored = ds.pixel_array
    ds.NumberOfFrames = 3
    ds.PixelData = np.concatenate([stored, stored, stored]).astype(np.int16).tobytes()
    origin = np.array(ds.ImagePositionPatient, dtype=float)
    shared, orientation, measures = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing = [0.5, 0.25]
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orientation], [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for k in range(3):
        position, transform, item = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = list(origin + [0, 0, 3.0 * k])
        transform.RescaleSlope, transform.RescaleIntercept = k + 1, -1024
        item.PlanePositionSequence, item.PixelValueTransformationSequence = [position], [transform]
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = frames
    pixels, info = decode([_encode(ds)])
    assert info.shape == (3, 128, 128) and info.spacing == (3.0, 0.5, 0.25)
    assert info.dtype == np.float32  # the slope differs per frame
    for k in range(3):
        np.testing.assert_allclose(pixels[k], stored * (k + 1) - 1024.0)


def test_file_without_preamble_or_meta_is_read():
    ds = _dataset("CT_small.dcm")
    del ds.file_meta
    ds.preamble = None
    raw = _encode(ds, implicit_vr=True, little_endian=True)
    assert raw[128:132] != b"DICM"
    expected, _ = decode([_bytes("CT_small.dcm")])
    pixels, _ = decode([raw])
    np.testing.assert_array_equal(pixels, expected)


@pytest.mark.parametrize("orientation", [(1, 0, 0, 0, 1, 0),
                                         (1, 0, 0, 0, np.cos(TILT), np.sin(TILT))],
                         ids=["axial", "tilted"])
def test_series_is_sorted_along_the_slice_normal(orientation):
    z = [5.0, 0.0, 10.0, 2.5, 7.5]
    parts, stored = _series(z, orientation=orientation)
    info = read_info(parts)
    pixels, decoded = decode(parts)
    assert decoded == info
    assert info.order == (1, 3, 0, 4, 2) and info.n_parts == 5
    assert info.shape == (5, 128, 128) and info.dtype == np.int32
    assert info.spacing == pytest.approx((2.5, CT_SPACING, CT_SPACING), abs=1e-3)
    for k, part in enumerate(info.order):
        np.testing.assert_array_equal(pixels[k], stored + 10 * part - 1024)


def test_series_without_geometry_falls_back_to_instance_numbers():
    parts, stored = _series([0, 1, 2], geometry=False)
    shuffled = [parts[2], parts[0], parts[1]]
    pixels, info = decode(shuffled)
    assert info.order == (1, 2, 0)
    assert info.spacing == (5.0, CT_SPACING, CT_SPACING)  # SliceThickness of CT_small
    np.testing.assert_array_equal(pixels[:, 0, 0], stored[0, 0] + np.array([0, 10, 20]) - 1024)


def test_parts_of_different_series_are_refused():
    a, _ = _series([0, 1])
    b, _ = _series([2, 3])
    _refused(a + b, "input.dicom", "2 different series")


def test_series_slices_of_another_size_are_refused():
    parts, _ = _series([0, 1, 2])
    ds = pydicom.dcmread(io.BytesIO(parts[2]))
    ds.Rows, ds.Columns = 64, 64
    ds.PixelData = np.zeros((64, 64), np.int16).tobytes()
    _refused(parts[:2] + [_encode(ds)], "input.dicom[2]", "64 x 64", "128 x 128")


def test_series_with_a_repeated_position_is_refused():
    parts, _ = _series([0.0, 2.5, 2.5])
    _refused(parts, "input.dicom[2]", "same slice position")


def test_multiframe_file_inside_a_series_is_refused():
    parts, _ = _series([0.0, 2.5])
    dose = _dataset("rtdose.dcm")
    dose.SeriesInstanceUID = pydicom.dcmread(io.BytesIO(parts[0])).SeriesInstanceUID
    _refused(parts + [_encode(dose)], "input.dicom[2]", "multi-frame")


def test_the_same_file_twice_is_refused():
    parts, _ = _series([0.0, 2.5])
    _refused(parts + [parts[1]], "input.dicom[2]", "SOPInstanceUID")


# -- refusals ------------------------------------------------------------------------------


def _chopped_pixels() -> bytes:
    ds = _dataset("CT_small.dcm")
    ds.PixelData = ds.PixelData[:-100]  # element length now says 100 bytes fewer
    return _encode(ds)


def _unknown_vr() -> bytes:
    raw = bytearray(_encode(_dataset("CT_small.dcm")))
    at = raw.find(b"\x28\x00\x10\x00US")  # Rows
    raw[at + 4:at + 6] = b"ZZ"
    return bytes(raw)


def _bad_integer() -> bytes:
    raw = _ct_variant(NumberOfFrames=1)
    element = b"\x28\x00\x08\x00IS\x02\x001 "
    assert raw.count(element) == 1
    return raw.replace(element, element[:-2] + b"1A")


def _truncated(name: str, cut: int) -> bytes:
    return _encode(_dataset(name))[:-cut]


def _with_sentinel(name: str) -> bytes:
    return _encode(_dataset(name))


BAD_PARTS = {
    "text": (lambda: _bytes("README.txt"), "not a DICOM file"),
    "garbage without preamble": (lambda: _bytes("no_meta.dcm"), "not a DICOM file"),
    "empty": (lambda: b"", "not a DICOM file"),
    "truncated pixel data": (lambda: _truncated("MR_small.dcm", 500), "truncated"),
    "MR_truncated.dcm": (lambda: _bytes("MR_truncated.dcm"), "truncated"),
    "truncated sequence": (lambda: _bytes("rtplan_truncated.dcm"), "truncated"),
    "bad IS value": (_bad_integer, "NumberOfFrames (0028,0008)"),
    "badVR.dcm": (lambda: _bytes("badVR.dcm"), "NumberOfFrames (0028,0008)"),
    "unknown VR": (_unknown_vr, "Rows (0028,0010)"),
    "RT structure set": (lambda: _with_sentinel("rtstruct.dcm"), "has no Pixel Data (7FE0,0010)"),
    "structured report": (lambda: _with_sentinel("test-SR.dcm"), "has no Pixel Data (7FE0,0010)"),
    "RGB": (lambda: _with_sentinel("SC_rgb_rle.dcm"), "SamplesPerPixel (0028,0002) is 3"),
    "palette colour": (lambda: _with_sentinel("examples_palette.dcm"), "PhotometricInterpretation"),
    "short pixel data": (_chopped_pixels, "holds 32668 bytes"),
    "zero rows": (lambda: _ct_variant(Rows=0), "absurd image size"),
    "too many frames": (lambda: _ct_variant(NumberOfFrames=100_001), "absurd image size"),
    "huge header": (lambda: _ct_variant(Rows=65535, Columns=65535, NumberOfFrames=100_000),
                    "more than the limit"),
}


@pytest.mark.parametrize("case", BAD_PARTS, ids=list(BAD_PARTS))
def test_bad_part_is_refused_and_named(case, monkeypatch):
    make, words = BAD_PARTS[case]
    bad = make()

    def no_decoding(*args, **kwargs):
        raise AssertionError("read_info decoded pixels")

    monkeypatch.setattr(dicom, "iter_pixels", no_decoding)
    good = _bytes("CT_small.dcm")
    _refused([good, bad], "input.dicom[1]", words)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the missing delimiter
def test_truncated_encapsulated_pixel_data_is_refused():
    _refused([_bytes("MR_small_RLE.dcm")[:-500]], "input.dicom[0]", "truncated")


def test_undecodable_compressed_data_is_refused_by_decode():
    data = _bytes("JPEG-lossy.dcm")  # its JPEG stream is known to be invalid
    assert read_info([data]).shape == (1024, 256)
    _refused([data], "input.dicom[0]", "could not be decoded", call=decode)


def test_rle_data_that_makes_the_decoder_panic_is_refused_by_decode():
    # One byte of the RLE segments left out: the Rust decoder (pylibjpeg-rle) panics with a
    # PanicException, which is a BaseException, not an Exception.
    data = _bytes("MR_small_RLE.dcm")
    data = data[:6036] + data[6037:]
    assert read_info([data]).shape == (64, 64)
    _refused([data], "input.dicom[0]", "could not be decoded (PanicException)", call=decode)


def test_voxel_limit_is_a_keyword():
    assert read_info([_bytes("CT_small.dcm")], max_voxels=128 * 128).shape == (128, 128)
    _refused([_bytes("CT_small.dcm")], "input.dicom[0]", "more than the limit", max_voxels=1000)
    parts, _ = _series([0, 1, 2])
    _refused(parts, "input.dicom", "3 files hold more than", max_voxels=128 * 128 * 2)


def test_deflated_file_inflating_past_the_limit_is_refused():
    ds = _dataset("CT_small.dcm")
    ds.Rows, ds.Columns, ds.NumberOfFrames = 4096, 4096, 3  # 96 MiB of zeros
    ds.PixelData = bytes(4096 * 4096 * 3 * 2)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    bomb = _encode(ds, enforce_file_format=True)
    assert len(bomb) < 1_000_000
    _refused([bomb], "input.dicom[0]", "inflates to more than", max_voxels=1000)


def test_no_parts_and_wrong_types():
    _refused([], "input.dicom")
    with pytest.raises(TypeError):
        read_info(_bytes("CT_small.dcm"))
    with pytest.raises(TypeError):
        read_info(["CT_small.dcm"])


def test_unexpected_parser_errors_become_invalid_argument_but_memory_errors_do_not(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("SENTINEL^PATIENT")

    monkeypatch.setattr(pydicom, "dcmread", broken)
    error = _refused([_bytes("CT_small.dcm")], "input.dicom[0]", "KeyError")
    assert pickle.loads(pickle.dumps(error)).field == "input.dicom[0]"

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(pydicom, "dcmread", exhausted)
    with pytest.raises(MemoryError):
        read_info([_bytes("CT_small.dcm")])


def test_patient_values_never_reach_logs_or_warnings(caplog):
    data = _ct_variant(AcquisitionNumber=12345678)
    element = b"\x20\x00\x12\x00IS\x08\x0012345678"
    assert data.count(element) == 1
    data = data.replace(element, element[:-8] + b"SENTINEL")  # an IS that is not a number
    settings = pydicom.config.settings
    modes = (settings.reading_validation_mode, settings.writing_validation_mode)
    with caplog.at_level(logging.DEBUG):
        read_info([data])
        pixels, info = decode([data])
        files = write_derived([data], pixels, spacing=info.spacing, description="x",
                              single_file=True)
    assert "SENTINEL" not in caplog.text
    assert b"SENTINEL" in files[0]  # CT Image Storage is kept: its header is copied as it is
    assert (settings.reading_validation_mode, settings.writing_validation_mode) == modes
    with pytest.warns(UserWarning, match="SENTINEL"):  # what pydicom says when left alone
        assert pydicom.dcmread(io.BytesIO(data)).AcquisitionNumber


def test_custom_field_prefix():
    with pytest.raises(InvalidArgument) as caught:
        read_info([b"nope"], field="header.inputs[0].dicom")
    assert caught.value.field == "header.inputs[0].dicom[0]"


# -- derived series ------------------------------------------------------------------------

DESCRIPTION = "gaussian sigma=(2,2,2) voxel; edge sobel"


def _read_all(files):
    datasets = [pydicom.dcmread(io.BytesIO(f)) for f in files]
    for ds in datasets:
        assert ds.pixel_array.shape[-2:] == (ds.Rows, ds.Columns)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    return datasets


def _check_derived(datasets, sources):
    source = pydicom.dcmread(io.BytesIO(sources[0]))
    source_uids = {pydicom.dcmread(io.BytesIO(s)).SOPInstanceUID for s in sources}
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert datasets[0].SeriesInstanceUID != source.SeriesInstanceUID
    uids = {ds.SOPInstanceUID for ds in datasets}
    assert len(uids) == len(datasets) and not uids & source_uids
    for ds in datasets:
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.PatientName == NAME and ds.PatientID == PID
        assert ds.DerivationDescription == DESCRIPTION
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert float(ds.WindowWidth) >= 1
        refs = {item.ReferencedSOPInstanceUID for item in ds.SourceImageSequence}
        assert refs and refs <= source_uids


def test_same_grid_series_round_trips_as_one_file_per_slice():
    parts, _ = _series([5.0, 0.0, 10.0, 2.5], orientation=(1, 0, 0, 0, np.cos(TILT), np.sin(TILT)))
    volume, info = decode(parts)
    files = write_derived(parts, volume, spacing=info.spacing, description=DESCRIPTION,
                          single_file=False)
    datasets = _read_all(files)
    _check_derived(datasets, parts)
    assert [ds.InstanceNumber for ds in datasets] == [1, 2, 3, 4]
    frame_of_reference = pydicom.dcmread(io.BytesIO(parts[0])).FrameOfReferenceUID
    assert {ds.FrameOfReferenceUID for ds in datasets} == {frame_of_reference}
    assert {ds.SOPClassUID for ds in datasets} == {pydicom.uid.CTImageStorage}
    sources = [pydicom.dcmread(io.BytesIO(parts[p])) for p in info.order]
    for ds, source in zip(datasets, sources):
        assert ds.ImagePositionPatient == source.ImagePositionPatient
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    back, back_info = decode(files[::-1])
    np.testing.assert_array_equal(back, volume)
    assert back_info.spacing == pytest.approx(info.spacing, abs=1e-4)


def test_same_grid_series_round_trips_as_one_multiframe_file():
    parts, _ = _series([0.0, 2.5, 5.0])
    volume, info = decode(parts)
    files = write_derived(parts, volume, spacing=info.spacing, description=DESCRIPTION,
                          single_file=True)
    assert len(files) == 1
    (ds,) = _read_all(files)
    _check_derived([ds], parts)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7.3" and ds.NumberOfFrames == 3
    assert ds.PixelRepresentation == 0 and len(ds.SourceImageSequence) == 3
    np.testing.assert_array_equal(pydicom.pixels.apply_rescale(ds.pixel_array, ds), volume)
    back, back_info = decode(files)
    np.testing.assert_array_equal(back, volume)
    assert back_info.spacing == pytest.approx(info.spacing, abs=1e-4)


@pytest.mark.parametrize("single_file", [False, True])
def test_float_results_are_recovered_within_the_quantisation_step(single_file):
    parts, _ = _series([0.0, 2.5, 5.0])
    volume, info = decode(parts)
    result = volume.astype(np.float32) * 0.0137 + 0.5
    result[0, 0, :3] = [np.nan, np.inf, -np.inf]
    files = write_derived(parts, result, spacing=info.spacing, description=DESCRIPTION,
                          single_file=single_file)
    back, back_info = decode(files)
    assert back_info.dtype == np.float32 and back.shape == result.shape
    finite = np.isfinite(result)
    tolerance = float(result[finite].max() - result[finite].min()) / 65535
    np.testing.assert_allclose(back[finite], result[finite], atol=tolerance, rtol=0)
    assert back[0, 0, 0] == pytest.approx(0, abs=tolerance)  # NaN is written as 0
    for ds in _read_all(files):
        recovered = pydicom.pixels.apply_rescale(ds.pixel_array, ds)
        assert recovered.shape[-2:] == (128, 128)


def test_wide_integers_are_rescaled_and_narrow_ones_kept():
    parts, _ = _series([0.0, 2.5])
    wide = np.arange(2 * 128 * 128, dtype=np.int32).reshape(2, 128, 128) * 3
    back, _ = decode(write_derived(parts, wide, spacing=None, description="x", single_file=False))
    np.testing.assert_allclose(back, wide, atol=(wide.max() - wide.min()) / 65535)
    narrow = (wide % 60000).astype(np.uint16)
    files = write_derived(parts, narrow, spacing=None, description="x", single_file=False)
    assert pydicom.dcmread(io.BytesIO(files[0])).PixelRepresentation == 0
    back, info = decode(files)
    np.testing.assert_array_equal(back, narrow)
    assert info.dtype == np.uint16


def test_projection_keeps_orientation_and_first_position():
    parts, _ = _series([5.0, 0.0, 10.0])
    volume, info = decode(parts)
    mip = volume.max(axis=0)
    files = write_derived(parts, mip, spacing=info.spacing[1:], description=DESCRIPTION,
                          single_file=True)
    (ds,) = _read_all(files)
    _check_derived([ds], parts)
    first = pydicom.dcmread(io.BytesIO(parts[info.order[0]]))
    assert ds.ImagePositionPatient == first.ImagePositionPatient
    assert ds.ImageOrientationPatient == first.ImageOrientationPatient
    assert len(ds.SourceImageSequence) == 3
    back, back_info = decode(files)
    np.testing.assert_array_equal(back, mip)
    assert back_info.shape == (128, 128)


def test_slab_stack_gets_positions_from_the_new_spacing():
    parts, _ = _series([0.0, 2.5, 5.0, 7.5])
    volume, info = decode(parts)
    slabs = volume[::2]
    spacing = (5.0, *info.spacing[1:])
    files = write_derived(parts, slabs, spacing=spacing, description=DESCRIPTION, single_file=False)
    back, back_info = decode(files)
    np.testing.assert_array_equal(back, slabs)
    assert back_info.spacing == pytest.approx(spacing, abs=1e-4)
    assert float(pydicom.dcmread(io.BytesIO(files[0])).SliceThickness) == 5.0


def test_resampled_grid_drops_position_and_orientation():
    parts, _ = _series([0.0, 2.5])
    volume, _ = decode(parts)
    small = volume[:, ::2, ::2]
    files = write_derived(parts, small, spacing=(2.5, 1.3, 1.3), description=DESCRIPTION,
                          single_file=False)
    for ds in _read_all(files):
        assert "ImagePositionPatient" not in ds and "ImageOrientationPatient" not in ds
        assert [float(v) for v in ds.PixelSpacing] == [1.3, 1.3]
        assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    back, _ = decode(files)
    np.testing.assert_array_equal(back, small)


def test_multiframe_source_writes_per_slice_files_with_frame_positions():
    data = _bytes("rtdose.dcm")
    dose, info = decode([data])
    files = write_derived([data], dose, spacing=info.spacing, description=DESCRIPTION,
                          single_file=False)
    assert len(files) == 15
    back, back_info = decode(files)
    np.testing.assert_allclose(back, dose, atol=(dose.max() - dose.min()) / 65535)
    assert back_info.spacing == pytest.approx((5.0, 10.0, 10.0))
    ds = pydicom.dcmread(io.BytesIO(files[3]))
    assert ds.SourceImageSequence[0].ReferencedFrameNumber == 4


def test_description_is_plain_text_of_at_most_1024_characters():
    parts = [_encode(_dataset("MR_small.dcm"))]
    pixels, _ = decode(parts)
    files = write_derived(parts, pixels, spacing=None, description="σ\x00" + "x" * 2000,
                          single_file=True)
    ds = pydicom.dcmread(io.BytesIO(files[0]))
    assert len(ds.DerivationDescription) == 1024 and ds.DerivationDescription.isascii()
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage


def test_bad_result_arrays_are_programming_errors():
    parts = [_bytes("CT_small.dcm")]
    for array, spacing in [(np.zeros((2, 2, 2, 2)), None), (np.zeros((4, 4)), (1.0,)),
                           (np.zeros((4, 4), complex), None)]:
        with pytest.raises(ValueError):
            write_derived(parts, array, spacing=spacing, description="", single_file=True)


def test_derived_uid_is_new_each_time():
    assert derived_uid() != derived_uid()
    assert pydicom.uid.UID(derived_uid()).is_valid


@pytest.mark.parametrize("n, slice_bytes, shares, align", [
    (300, 512 * 512 * 2, 2, 1 << 20), (61, 32768, 3, 1 << 20), (5, 32768, 2, 1 << 20),
    (40, 3 * 1000, 4, 1 << 20), (7, 1 << 20, 7, 1 << 20), (100, 3000, 2, 4096)])
def test_shares_cut_the_slices_in_order_at_aligned_bytes(n, slice_bytes, shares, align):
    bounds = [dicom.share_bounds(n, slice_bytes, k, shares, align) for k in range(shares)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))   # consecutive, no gap
    assert all(start * slice_bytes % align == 0 for start, _ in bounds)
    assert all(start <= stop for start, stop in bounds)


def test_shares_decoded_apart_are_the_series_decoded_whole():
    from tests import store_helpers as H

    parts = H.ct_series(9)
    whole, info = decode(parts)
    plane = 128 * 128 * whole.dtype.itemsize
    pieces = [dicom.decode_share(parts, k, 3, align=2 * plane) for k in range(3)]
    assert [start for _, _, start in pieces] == [0, 2, 6]      # units of 2 slices
    assert all(i.shape == info.shape and i.dtype == info.dtype for _, i, _ in pieces)
    assert np.array_equal(np.concatenate([a for a, _, _ in pieces]), whole)


def test_a_damaged_file_fails_every_share_naming_its_index():
    # Each share reads every header (the order and the rescale are the whole series'):
    # a file damaged there fails each share as it fails the series decoded whole.
    from tests import store_helpers as H

    parts = H.ct_series(6)
    parts[4] = parts[4][:-100]                       # cut short
    plane = 128 * 128 * 2
    for k in (0, 1):
        with pytest.raises(InvalidArgument) as caught:
            dicom.decode_share(parts, k, 2, align=3 * plane)
        assert caught.value.field == "input.dicom[4]"
    with pytest.raises(InvalidArgument) as whole:
        decode(parts)
    assert whole.value.field == "input.dicom[4]"
