"""Fuzzing DICOM uploads: pydicom's bundled files, damaged on purpose, sent to Process.

Mutations: values the headers should not hold (rewritten with pydicom), elements whose
length field lies, elements removed or duplicated, the transfer syntax swapped for
another, and plain byte damage (bit flips, truncation, insertion, deletion). Every call
succeeds or fails with a status a caller can act on, never quoting the patient's name
or id; and the server keeps serving.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from functools import cache
from pathlib import Path

import blosc2  # noqa: F401 - imported here: its import uses `random`, not allowed in a strategy
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2 as img
from medcompute.proto.v1 import operations_pb2 as ops
from medcompute.proto.v1 import processing_pb2 as pb
from tests import dciodvfy

pytestmark = [pytest.mark.integration,
              pytest.mark.timeout(120 + 2 * settings().max_examples)]

#: Files this server accepts as they are (grayscale images in transfer syntaxes it decodes).
GOOD = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
        "JPEG2000.dcm", "JPGExtended.dcm", "rtdose.dcm", "rtdose_1frame.dcm", "rtdose_rle.dcm",
        "image_dfl.dcm", "JPEGLSNearLossless_16.dcm"]
#: Files it refuses (colour, no pixels, truncated, no file meta, undecodable).
REFUSED = ["SC_rgb_rle.dcm", "ExplVR_BigEnd.dcm", "rtstruct.dcm", "MR_truncated.dcm",
           "no_meta.dcm", "JPEG-lossy.dcm"]
#: A five-slice CT series (one file per slice).
SERIES = os.path.join("dicomdirtests", "98892001", "CT5N")


@cache
def _folder() -> str:
    return os.path.dirname(get_testdata_file("CT_small.dcm", download=False))


@cache
def files(name: str) -> tuple[bytes, ...]:
    """The bytes of a bundled file, or of each file of a bundled series."""
    path = Path(_folder()) / name
    if path.is_dir():
        return tuple(f.read_bytes() for f in sorted(path.iterdir()))
    return (path.read_bytes(),)


@cache
def secrets(name: str) -> tuple[str, ...]:
    """The patient's name (and its parts) and ids in a file: no message may quote them.
    (Ids made of digits only are left out: they could match a byte count.)"""
    found = set()
    for blob in files(name):
        ds = _read(blob)
        for keyword in ("PatientName", "PatientID", "OtherPatientIDs", "PatientBirthName"):
            value = str(ds.get(keyword, "") or "")
            for text in (value, *value.replace("=", "^").split("^")):
                if len(text) >= 4 and any(c.isalpha() for c in text):
                    found.add(text)
    return tuple(sorted(found))


def _read(blob: bytes, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(blob), force=True, **kw)


# -- mutations -------------------------------------------------------------------------------

_STRINGS = ["", "0", "1", "-1", "2", "abc", "nan", "inf", "-inf", "1e308", "-1e308", "1e-308",
            "100000", "2147483648", "3.5", " ", "\\", "1\\2"]
_US = [0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 31, 32, 33, 64, 128, 255, 256, 32767, 32768, 65535]
#: Keywords of the image pixel, frame and geometry modules, and values they should not have.
REWRITES = {
    "Rows": st.sampled_from(_US),
    "Columns": st.sampled_from(_US),
    "BitsAllocated": st.sampled_from(_US),
    "BitsStored": st.sampled_from(_US),
    "HighBit": st.sampled_from(_US),
    "PixelRepresentation": st.sampled_from([0, 1, 2, 65535]),
    "SamplesPerPixel": st.sampled_from([0, 1, 2, 3, 4, 65535]),
    "PlanarConfiguration": st.sampled_from([0, 1, 2]),
    "NumberOfFrames": st.sampled_from(["0", "1", "2", "3", "15", "16", "-1", "100000",
                                       "2147483648", "1e3", "abc", ""]),
    "PhotometricInterpretation": st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB",
                                                  "PALETTE COLOR", "YBR_FULL", "", "X" * 16]),
    "RescaleSlope": st.sampled_from(_STRINGS),
    "RescaleIntercept": st.sampled_from(_STRINGS),
    "DoseGridScaling": st.sampled_from(_STRINGS),
    "SliceThickness": st.sampled_from(_STRINGS),
    "SpacingBetweenSlices": st.sampled_from(_STRINGS),
    "PixelSpacing": st.lists(st.sampled_from(_STRINGS), max_size=4),
    "ImagePositionPatient": st.lists(st.sampled_from(_STRINGS), max_size=4),
    "ImageOrientationPatient": st.one_of(
        st.lists(st.sampled_from(["0", "1", "-1", "0.5", "nan"]), min_size=6, max_size=6),
        st.lists(st.sampled_from(_STRINGS), max_size=7)),
    "GridFrameOffsetVector": st.lists(st.sampled_from(_STRINGS), max_size=16),
    "InstanceNumber": st.sampled_from(["", "1", "-5", "abc", "2147483648"]),
    "SOPClassUID": st.sampled_from(["1.2.840.10008.5.1.4.1.1.481.2", "1.2.3", ""]),
    "WindowCenter": st.sampled_from(_STRINGS),
}


@st.composite
def pydicom_rewrite(draw, blob: bytes) -> bytes:
    """Values changed, elements deleted and Pixel Data cut or grown, written back by pydicom
    in the file's own encoding; the file unchanged if pydicom cannot read or write it."""
    try:
        ds = _read(blob)
    except Exception:  # noqa: BLE001 - damaged by an earlier mutation beyond pydicom's reading
        return blob
    for _ in range(draw(st.integers(1, 4))):
        keyword = draw(st.sampled_from([*REWRITES, "PixelData", "delete"]))
        value = draw(REWRITES[keyword]) if keyword in REWRITES else draw(st.integers(0, 1 << 20))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if keyword == "delete":
                    keys = sorted(k for k in ds.keys() if k.group != 0x0002)
                    if keys:
                        del ds[keys[value % len(keys)]]
                elif keyword == "PixelData":
                    data = ds.get_item(0x7FE00010)
                    data = data.value if data is not None else None
                    if isinstance(data, bytes):
                        n = value % (len(data) + 64)
                        ds.PixelData = data[:n] + bytes(max(0, n - len(data)))
                else:
                    setattr(ds, keyword, value)
        except Exception:  # noqa: BLE001 - an element or a value pydicom will not take
            pass
    out = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(out, enforce_file_format=False)
    except Exception:  # noqa: BLE001 - pydicom refuses to write some of these
        return blob
    return out.getvalue()


_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def _elements(blob: bytes):
    """(tag, header offset, length-field offset and size, end, little endian) of each
    top-level element of a non-deflated file, from pydicom's parse."""
    try:
        ds = _read(blob)
    except Exception:  # noqa: BLE001 - damaged beyond parsing
        return []
    if str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "")) == \
            DeflatedExplicitVRLittleEndian:
        return []  # offsets would be in the inflated stream
    found, tags = [], sorted(ds.keys())
    for k, tag in enumerate(tags):
        try:
            raw = ds.get_item(tag)
        except Exception:  # noqa: BLE001 - pydicom cannot even describe this element
            continue
        if not isinstance(raw, RawDataElement) or raw.value_tell is None:
            continue
        at = raw.value_tell
        if raw.is_implicit_VR:
            header, length_at, size = at - 8, at - 4, 4
        elif raw.VR in _LONG_VRS:
            header, length_at, size = at - 12, at - 4, 4
        else:
            header, length_at, size = at - 8, at - 2, 2
        if raw.length == 0xFFFFFFFF:
            end = len(blob) if k == len(tags) - 1 else None  # undefined: only if it is last
        else:
            end = at + raw.length
        if header >= 0 and end is not None and end <= len(blob):
            found.append((tag, header, length_at, size, end, raw.is_little_endian))
    return found


@st.composite
def element_surgery(draw, blob: bytes) -> bytes:
    """An element's length field changed, the element removed or duplicated, or its value
    replaced by other bytes, in the encoded file."""
    elements = _elements(blob)
    if not elements:
        return blob
    pixel = [e for e in elements if e[0] in (0x7FE00010, 0x00280010, 0x00280011, 0x00280100,
                                             0x00280008)]
    tag, header, length_at, size, end, little = draw(st.sampled_from(pixel or elements)
                                                     | st.sampled_from(elements))
    action = draw(st.sampled_from(["length", "remove", "duplicate", "value"]))
    b = bytearray(blob)
    if action == "length":
        old = end - length_at - size
        top = (1 << (8 * size)) - 1
        new = draw(st.sampled_from([0, 1, 2, 3, old - 1, old + 1, old + 2, old * 2, top,
                                    top - 1]).filter(lambda v: 0 <= v <= top)
                   | st.integers(0, top))
        b[length_at:length_at + size] = new.to_bytes(size, "little" if little else "big")
    elif action == "remove":
        del b[header:end]
    elif action == "duplicate":
        b[end:end] = b[header:end]
    else:
        value = draw(st.binary(max_size=16))
        b[length_at + size:end] = value
        fmt = ("<" if little else ">") + ("H" if size == 2 else "I")
        b[length_at:length_at + size] = struct.pack(fmt, len(value))
    return bytes(b)


SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
            DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit, JPEG2000Lossless, RLELossless,
            JPEGLSLossless, "1.2.840.10008.1.2.4.100", "1.2.3.4.5.6", "", "1.2.840.10008.1.2\0"]


@st.composite
def swap_syntax(draw, blob: bytes) -> bytes:
    """The Transfer Syntax UID in the file meta replaced, the data set left as it was."""
    at = blob.find(b"\x02\x00\x10\x00UI", 128, 1024)
    if at < 0:
        return blob
    old = struct.unpack_from("<H", blob, at + 6)[0]
    uid = draw(st.sampled_from(SYNTAXES)).encode()
    uid += b"\0" * (len(uid) % 2)
    return blob[:at + 6] + struct.pack("<H", len(uid)) + uid + blob[at + 8 + old:]


@st.composite
def byte_damage(draw, blob: bytes) -> bytes:
    """Bit flips, truncation, insertion, deletion or overwriting, anywhere in the file."""
    b = bytearray(blob)
    action = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
    at = draw(st.integers(0, max(len(b) - 1, 0)))
    if action == "flip":
        for _ in range(draw(st.integers(1, 8))):
            if b:
                b[draw(st.integers(0, len(b) - 1))] ^= 1 << draw(st.integers(0, 7))
    elif action == "truncate":
        del b[at:]
    elif action == "insert":
        b[at:at] = draw(st.binary(min_size=1, max_size=64))
    elif action == "delete":
        del b[at:at + draw(st.integers(1, 256))]
    else:
        piece = draw(st.binary(min_size=1, max_size=32))
        b[at:at + len(piece)] = piece
    return bytes(b)


MUTATIONS = [pydicom_rewrite, element_surgery, swap_syntax, byte_damage]

PIPELINES = [
    [ops.Operation(gaussian=ops.GaussianOp(sigma_mm=[1.0]))],
    [ops.Operation(gaussian=ops.GaussianOp(sigma=[1.0]))],
    [ops.Operation(project=ops.ProjectOp(axis=0))],
    [ops.Operation(edge=ops.EdgeOp()), ops.Operation(mean=ops.MeanOp(size=[3]))],
    [ops.Operation(subtract=ops.SubtractOp(mask_frame=0))],
]


@st.composite
def uploads(draw):
    """A bundled file (or series), mutated zero or more times, as one Process request."""
    name = draw(st.sampled_from(GOOD + REFUSED + [SERIES]))
    parts = list(files(name))
    mutations = draw(st.lists(st.sampled_from(MUTATIONS), max_size=3))
    for mutation in mutations:
        k = draw(st.integers(0, len(parts) - 1))
        parts[k] = draw(mutation(parts[k]))
    parts = [p for p in parts if p] or [b"\0"]
    blob = b"".join(parts)
    sizes = [len(p) for p in parts]
    if draw(st.integers(0, 9)) == 5:  # file boundaries that do not match the files
        cuts = sorted(set(draw(st.lists(st.integers(1, len(blob)), max_size=4))))
        sizes = [b - a for a, b in zip([0, *cuts], [*cuts, len(blob)]) if b > a]
        mutations = [*mutations, "file_sizes"]
    compression = draw(st.sampled_from([img.COMPRESSION_NONE] * 4 + [img.COMPRESSION_ZSTD,
                                                                     img.COMPRESSION_BLOSC]))
    header = pb.ProcessHeader(
        pipeline=draw(st.sampled_from(PIPELINES)),
        input=img.ImageSource(inline=img.ImageDescriptor(
            encoding=img.ENCODING_DICOM, file_sizes=sizes, size=len(blob), crc32=wire.crc32(blob),
            compression=compression)),
        output_format=draw(st.sampled_from([pb.OUTPUT_FORMAT_RAW, pb.OUTPUT_FORMAT_DICOM_SERIES,
                                            pb.OUTPUT_FORMAT_DICOM_FILE])),
        output_dtype=draw(st.sampled_from([0, img.DATA_TYPE_UINT8, img.DATA_TYPE_INT16,
                                           img.DATA_TYPE_UINT16, img.DATA_TYPE_FLOAT64])))
    messages = [pb.ProcessRequest(header=header)]
    messages += [pb.ProcessRequest(chunk=img.Chunk(data=c))
                 for c in wire.iter_chunks(blob, compression=compression)]
    return name, mutations, header, messages, parts


@given(uploads())
def test_damaged_dicom_uploads(fuzz, case):
    name, mutations, header, messages, parts = case
    outcome = fuzz.check(messages, secrets=secrets(name))
    if not mutations and name in GOOD + [SERIES]:
        # A file as pydicom ships it is processed, unless the pipeline does not fit it.
        assert outcome.ok or "pipeline" in outcome.details, outcome
    if outcome.ok and header.output_format != pb.OUTPUT_FORMAT_RAW:
        # The derived files are DICOM again.
        at = 0
        for size in outcome.header.output.file_sizes:
            data = outcome.data[at:at + size]
            ds = _read(data)
            at += size
            assert "PixelData" in ds and ds.ImageType[0] == "DERIVED"
            if "file_sizes" not in mutations:  # the files the server read are `parts`
                # no validator error the (possibly damaged) input did not have
                assert dciodvfy.new_errors(data, parts) == set(), (name, mutations)
