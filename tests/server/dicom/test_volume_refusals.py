"""Every refusal of dicom/volume.py a caller's files can meet, each file made from one of
pydicom's test files with an attribute changed in memory: the part it names
(``input.dicom[i]``, or the whole request for a series-wide mistake) and the message."""

from __future__ import annotations

import io
import pathlib

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless, generate_uid

from medcompute.server.dicom.volume import load, quiet_pydicom
from medcompute.server.errors import InvalidArgument

FIELD = "input.dicom"


def _ds(name: str = "CT_small.dcm", **changes) -> Dataset:
    """A test file with ``changes`` (None: the attribute removed), invalid values allowed."""
    ds = pydicom.dcmread(get_testdata_file(name))
    with quiet_pydicom():
        for keyword, value in changes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
    return ds


def _encode(ds: Dataset) -> bytes:
    out = io.BytesIO()
    with quiet_pydicom():
        ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def _relabelled(ds: Dataset, syntax: UID) -> bytes:
    """``ds`` encoded as it is (explicit VR little endian), under file meta that names
    ``syntax``: what a damaged export looks like."""
    fp = DicomBytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    meta = FileMetaDataset(ds.file_meta)
    meta.TransferSyntaxUID = syntax
    write_file_meta_info(fp, meta, enforce_standard=True)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def _slice(z: float, **changes) -> Dataset:
    return _ds(ImagePositionPatient=[0.0, 0.0, z], SOPInstanceUID=generate_uid(), **changes)


def _refused(parts: list[bytes]) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught, quiet_pydicom():
        load(parts, max_voxels=1 << 30, field=FIELD)
    return caught.value


def _mr_rle() -> Dataset:
    return _ds("MR_small_RLE.dcm")


def _mpeg2() -> bytes:
    ds = _mr_rle()
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")    # MPEG2 MP@ML
    return _encode(ds)


def _with_lut() -> Dataset:
    lut = Dataset()
    lut.LUTDescriptor = [2, 0, 16]
    lut.ModalityLUTType = "HU"
    lut.add_new(0x00283006, "US", [0, 1])      # LUTData: two 16-bit entries
    return _ds(ModalityLUTSequence=Sequence([lut]))


@pytest.mark.parametrize("part, words", [
    (b"", "not a DICOM file: the file is empty"),
    (_encode(_ds(ImagePositionPatient=[0.0, 1.0])),
     "ImagePositionPatient (0020,0032) must hold 3 finite numbers; it holds 2 values"),
    (_encode(_ds(Rows=None)), "Rows (0028,0010) is missing; an image must have it"),
    (_encode(_ds("MR_small.dcm", NumberOfFrames="1.5")),
     "NumberOfFrames (0028,0008) must be one integer"),
    (_encode(_ds(SamplesPerPixel=3)),
     "colour images are not supported: SamplesPerPixel (0028,0002) is 3; send grayscale "
     "images (SamplesPerPixel 1)"),
    (_encode(_ds(PhotometricInterpretation="PALETTE COLOR")),
     "PhotometricInterpretation (0028,0004) is neither MONOCHROME1 nor MONOCHROME2 (a colour "
     "or palette image); send grayscale images"),
    (_encode(_with_lut()),
     "images with a Modality LUT Sequence (0028,3000) are not supported; send images that "
     "use RescaleSlope/RescaleIntercept"),
    (_encode(_ds(BitsAllocated=12, BitsStored=12)),
     "unsupported bit depth: BitsAllocated (0028,0100) 12, BitsStored (0028,0101) 12"),
    (_mpeg2(), "the pixel data uses MPEG2 Main Profile / Main Level, which this server cannot "
               "decode; send it uncompressed or as JPEG, JPEG-LS, JPEG 2000 or RLE"),
    (_relabelled(_ds("MR_small.dcm"), RLELossless),
     "the pixel data of RLE Lossless is not encapsulated; the file is damaged, re-export it"),
    (_relabelled(_mr_rle(), ExplicitVRLittleEndian),
     "the pixel data is encapsulated but the transfer syntax is Explicit VR Little Endian; "
     "the file is damaged, re-export it"),
    (_encode(_ds(RescaleSlope=0)),
     "RescaleSlope (0028,1053) is 0; it must be a non-zero number"),
])
def test_a_file_the_server_cannot_use_is_refused_naming_it(part, words):
    error = _refused([part])
    assert error.field == f"{FIELD}[0]"
    assert error.message == words


def test_no_files_at_all():
    error = _refused([])
    assert error.field == FIELD
    assert error.message == "no DICOM files were sent; send at least one file"


def _two_frames() -> bytes:
    """CT_small as a two-frame file: the pixels of its one frame twice."""
    ds = _ds()
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    ds.SOPInstanceUID = generate_uid()
    return _encode(ds)


def _series_mistake(second: Dataset | bytes) -> InvalidArgument:
    first = _slice(0.0)
    return _refused([_encode(first), second if isinstance(second, bytes) else _encode(second)])


@pytest.mark.parametrize("second, field, words", [
    (_slice(5.0, SeriesInstanceUID=generate_uid()), FIELD,
     "the 2 files belong to 2 different series (SeriesInstanceUID); send the files of one "
     "series per request"),
    (_two_frames, f"{FIELD}[1]",
     "is a multi-frame file (2 frames) sent with 1 other files; send a multi-frame file "
     "alone, or a series of single-frame files"),
    (_slice(5.0, Rows=64, Columns=64), f"{FIELD}[1]",
     "has 64 x 64 pixels but the first file has 128 x 128; all slices of a series must have "
     "the same rows and columns"),
    (_slice(5.0, BitsStored=12), f"{FIELD}[1]",
     "stores its pixels with a different BitsAllocated/BitsStored/PixelRepresentation than "
     "the first file; all slices of a series must use the same pixel format"),
    (_slice(5.0, PixelSpacing=[0.5, 0.5]), f"{FIELD}[1]",
     "has a different PixelSpacing or ImageOrientationPatient than the first file; a series "
     "must be one stack of parallel, equally sampled slices"),
    (_slice(0.0), f"{FIELD}[1]",
     f"has the same slice position as {FIELD}[0] (ImagePositionPatient along the slice "
     "normal); a series must not hold the same slice twice"),
])
def test_a_series_the_server_cannot_stack_is_refused(second, field, words):
    if callable(second):
        second = second()
    error = _series_mistake(second)
    assert error.field == field
    assert error.message == words


def test_the_same_instance_twice_is_refused():
    first = _slice(0.0)
    again = _ds(ImagePositionPatient=[0.0, 0.0, 5.0], SOPInstanceUID=first.SOPInstanceUID)
    error = _refused([_encode(first), _encode(again)])
    assert error.field == f"{FIELD}[1]"
    assert error.message == ("is the same instance (SOPInstanceUID) as input.dicom[0]; send "
                             "each file once")


def _ct_bytes() -> bytes:
    return _encode(_ds())


def _cut(data: bytes, end: int) -> bytes:
    """The first ``end`` bytes of a file: a transfer that stopped early."""
    return data[:end]


def _rle_frames(n: int) -> bytes:
    ds = _mr_rle()
    ds.NumberOfFrames = n          # one fragment holds one frame
    return _encode(ds)


def _short_pixels() -> bytes:
    ds = _ds()
    ds.PixelData = ds.PixelData[:1000]
    return _encode(ds)


CT = _ct_bytes()
PIXEL_TAG = CT.rfind(b"\xe0\x7f\x10\x00")


@pytest.mark.parametrize("parts, max_voxels, field, words", [
    ([_cut(CT, len(CT) - 1000)], 1 << 30, f"{FIELD}[0]",
     "the file is truncated: element (7FE0,0010) declares 32768 bytes but only 31906 follow; "
     "send the complete file"),
    ([_cut(CT, PIXEL_TAG + 6)], 1 << 30, f"{FIELD}[0]",
     "the file is truncated inside its Pixel Data (7FE0,0010); send the complete file"),
    ([pathlib.Path(get_testdata_file("rtstruct.dcm")).read_bytes()], 1 << 30, f"{FIELD}[0]",
     "has no Pixel Data (7FE0,0010) (SOP class: RT Structure Set Storage): it is not an image "
     "(for example a structured report or an RT structure set); send image files such as CT "
     "or MR"),
    ([_encode(_ds(Rows=0))], 1 << 30, f"{FIELD}[0]",
     "absurd image size 1 x 0 x 128 (frames x rows x columns); rows and columns must be "
     "1..65535 and frames 1..100000"),
    ([CT], 1000, f"{FIELD}[0]",
     "the image has 1 x 128 x 128 voxels, more than the limit of 1000 of this server; send a "
     "smaller image"),
    ([CT, CT], 128 * 128 + 10, FIELD,
     "the 2 files hold more than 16394 voxels, over this server's limit; send fewer or "
     "smaller images"),
    ([_rle_frames(3)], 1 << 30, f"{FIELD}[0]",
     "the encapsulated pixel data holds 1 fragments for 3 frames; the file is truncated or "
     "damaged"),
    ([_short_pixels()], 1 << 30, f"{FIELD}[0]",
     "the Pixel Data holds 1000 bytes but Rows x Columns x NumberOfFrames x BitsAllocated/8 "
     "= 128 x 128 x 1 x 16/8 needs 32768; the file is truncated or its header is wrong"),
])
def test_a_truncated_oversized_or_pixel_less_file_is_refused(parts, max_voxels, field, words):
    with pytest.raises(InvalidArgument) as caught, quiet_pydicom():
        load(parts, max_voxels=max_voxels, field=FIELD)
    assert caught.value.field == field
    assert caught.value.message == words
