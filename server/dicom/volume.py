"""DICOM headers parsed, checked and put in slice order: the `Volume` both sides share.

`load` parses the headers of a request's *parts* (the bytes of one DICOM file each; Pixel
Data is skipped, never decoded), checks all it can and orders the slices. ``dicom.read``
decodes a `Volume`'s pixels; ``dicom.write`` writes a derived series from one. Neither
imports the other; both import this module.

Every problem with a caller's bytes raises `InvalidArgument` naming the part
(``input.dicom[3]``), with tags, counts and sizes, never element values (no names,
ids, dates or UIDs). For the same reason pydicom's value validation is off inside
`quiet_pydicom` (process-wide): its warnings and logs quote the values.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom import config as pydicom_config
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import parse_fragments
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medcompute.server.errors import InvalidArgument

__all__ = ["PIXEL_TAGS", "DicomInfo", "Volume", "as_invalid_argument", "header_floats",
           "header_int", "header_value", "load", "parse", "quiet_pydicom", "tag_name",
           "transfer_syntax", "unit_normal"]

_MAX_EDGE, _MAX_FRAMES = 65_535, 100_000
_DEFER = 16_384  # a header-only read skips (does not copy) elements larger than this
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float
_RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
_DEFLATED = b"1.2.840.10008.1.2.1.99"
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
             b"UV"}
_NOT_DICOM = ("not a DICOM file: there is no 'DICM' marker at byte 128 and the bytes do not "
              "start with a DICOM data element; send DICOM files (Part 10, .dcm)")


@dataclass(frozen=True)
class DicomInfo:
    """What the headers of a request say about its image."""

    shape: tuple[int, ...]  # (rows, cols) for one slice in all, else (slices, rows, cols)
    dtype: np.dtype  # what `decode` returns: the values after rescale
    spacing: tuple[float, ...] | None  # mm per axis of `shape`; None when any is unknown
    modality: str  # of the first part
    n_parts: int
    sop_class_uid: str  # of the first part
    order: tuple[int, ...] = ()  # part indices in slice order
    transfer_syntax_uid: str = ""  # of the first part
    stored_dtype: np.dtype | None = None  # of the stored values, before rescale
    rescaled: bool = False  # a slope or intercept other than 1 and 0 is applied


@dataclass
class _Part:
    """The pixel format and geometry of one part."""

    rows: int
    cols: int
    frames: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    floating: bool
    transfer_syntax: str
    positions: list[np.ndarray] | None = None  # ImagePositionPatient per frame
    orientation: np.ndarray | None = None  # ImageOrientationPatient, (6,)
    pixel_spacing: tuple[float, float] | None = None  # (between rows, between columns)
    thickness: float | None = None
    between: float | None = None  # SpacingBetweenSlices
    rescale: list[tuple[float, float]] | None = None  # (slope, intercept) per frame


@dataclass
class Volume:
    """A request's parts, parsed and put in slice order (``dicom.read`` decodes its pixels,
    ``dicom.write`` writes derived series from it)."""

    info: DicomInfo
    datasets: list[Dataset]
    slices: list[tuple[int, int]]  # (part, frame) of each slice, in volume order
    rescale: list[tuple[float, float]]  # (slope, intercept) of each slice
    positions: np.ndarray | None  # (slices, 3)
    orientation: np.ndarray | None  # (6,)
    pixel_spacing: tuple[float, float] | None
    thickness: float | None


_quiet_lock = threading.Lock()
_quiet_users = 0
_saved_modes = (pydicom_config.WARN, pydicom_config.WARN)


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Switch pydicom's value validation off: its warnings and logs quote element values."""
    global _quiet_users, _saved_modes
    settings = pydicom_config.settings
    with _quiet_lock:
        if _quiet_users == 0:
            _saved_modes = (settings.reading_validation_mode, settings.writing_validation_mode)
            settings.reading_validation_mode = pydicom_config.IGNORE
            settings.writing_validation_mode = pydicom_config.IGNORE
        _quiet_users += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0:
                settings.reading_validation_mode, settings.writing_validation_mode = _saved_modes


# -- parsing -------------------------------------------------------------------------------


def load(parts: Sequence[bytes | memoryview], *, max_voxels: int, field: str) -> Volume:
    """Parse the headers of every part, check them, order the slices (in `quiet_pydicom`)."""
    if isinstance(parts, (bytes, bytearray, memoryview, str)):
        raise TypeError("parts must be a sequence of bytes objects, one per DICOM file")
    if len(parts) == 0:
        raise InvalidArgument("no DICOM files were sent; send at least one file", field)
    datasets, descs, total = [], [], 0
    for i, part in enumerate(parts):
        where = f"{field}[{i}]"
        if not isinstance(part, (bytes, bytearray, memoryview)):
            raise TypeError(f"{where}: expected bytes, got {type(part).__name__}")
        with as_invalid_argument(where):
            ds, buffer = parse(bytes(part), where, True, max_voxels)
            descs.append(_describe(ds, buffer, where, max_voxels))
        datasets.append(ds)
        total += descs[-1].rows * descs[-1].cols * descs[-1].frames
        if total > max_voxels:
            raise InvalidArgument(f"the {len(parts)} files hold more than {max_voxels} voxels, "
                                  "over this server's limit; send fewer or smaller images", field)
    with as_invalid_argument(field):
        return _assemble(datasets, descs, field)


@contextlib.contextmanager
def as_invalid_argument(where: str) -> Iterator[None]:
    """Turn whatever pydicom raises on damaged input into `InvalidArgument`."""
    try:
        yield
    except (MemoryError, InvalidArgument):
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged input
        tags = re.findall(r"\(([0-9A-Fa-f]{4}), ?([0-9A-Fa-f]{4})\)", str(exc))
        at = f" at element ({tags[0][0].upper()},{tags[0][1].upper()})" if tags else ""
        what = "truncated" if isinstance(exc, EOFError) else "damaged or wrongly encoded"
        raise InvalidArgument(f"could not be parsed as DICOM ({type(exc).__name__}{at}): the "
                              f"file is {what}; re-export it from its source", where) from None


def parse(data: bytes, where: str, headers_only: bool, max_voxels: int):
    """The dataset, and the buffer its value offsets refer to (None when it was inflated)."""
    if not data:
        raise InvalidArgument("not a DICOM file: the file is empty", where)
    marker = data[128:132] == b"DICM"
    if not marker and data[:2] not in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08"):
        raise InvalidArgument(_NOT_DICOM, where)
    deflated = marker and _deflated_meta_end(data) is not None
    if deflated:
        _check_inflated_size(data, where, max_voxels * 8 + 2**26)
    ds = pydicom.dcmread(io.BytesIO(data), force=not marker,
                         defer_size=_DEFER if headers_only and not deflated else None)
    if not marker and not any(t in ds for t in (0x00080016, 0x00280010, *PIXEL_TAGS)):
        raise InvalidArgument(_NOT_DICOM, where)
    buffer = None if deflated else data
    for tag in list(ds.keys()):  # a truncated file: an element declares more than follows
        raw = ds.get_item(tag, keep_deferred=True)
        if (not isinstance(raw, RawDataElement) or raw.length in (0, 0xFFFFFFFF)
                or (raw.value is None and buffer is None)):
            continue
        have = len(raw.value) if raw.value is not None else len(data) - raw.value_tell
        if have < raw.length:
            raise InvalidArgument(
                f"the file is truncated: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) declares "
                f"{raw.length} bytes but only {max(have, 0)} follow; send the complete file", where)
    return ds, buffer


def _deflated_meta_end(data: bytes) -> int | None:
    """End of the file meta group when the transfer syntax is Deflated Explicit VR LE."""
    pos = 132
    while pos + 8 <= len(data) and data[pos:pos + 2] == b"\x02\x00":
        if data[pos + 4:pos + 6] in _LONG_VRS:
            pos += 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return pos if data.find(_DEFLATED, 132, pos) != -1 else None


def _check_inflated_size(data: bytes, where: str, limit: int) -> None:
    """Refuse a deflated file that would inflate past `limit` bytes, before pydicom inflates it."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total, pending = 0, data[_deflated_meta_end(data):]
    while pending:
        total += len(inflater.decompress(pending, 2**24))
        if total > limit:
            raise InvalidArgument(
                f"the deflated data set inflates to more than {limit} bytes, more than any image "
                "this server accepts; send the image uncompressed or losslessly compressed", where)
        pending = inflater.unconsumed_tail


# -- header values -------------------------------------------------------------------------


def tag_name(keyword: str) -> str:
    """``Keyword (GGGG,EEEE)``, how messages name an attribute (never its value)."""
    tag = tag_for_keyword(keyword) or 0
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def header_value(ds: Dataset, keyword: str, where: str):
    """The element's value (None when absent); InvalidArgument when pydicom cannot read it."""
    try:
        return ds.get(keyword)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - a value pydicom cannot convert
        raise InvalidArgument(f"{tag_name(keyword)} could not be read; re-export the file",
                              where) from None


def header_floats(ds: Dataset, keyword: str, where: str, n: int | None = None):
    """The numbers of a DS/IS/US... element, checked; None when absent or empty."""
    value = header_value(ds, keyword, where)
    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    if value is None or value == "" or not values:
        return None
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{tag_name(keyword)} is not a number", where) from None
    if (n is not None and len(out) != n) or not all(np.isfinite(out)):
        raise InvalidArgument(f"{tag_name(keyword)} must hold {n or 'only'} finite numbers; it "
                              f"holds {len(out)} values", where)
    return out


def header_int(ds: Dataset, keyword: str, where: str, default: int | None = None) -> int:
    values = header_floats(ds, keyword, where)
    if values is None:
        if default is None:
            raise InvalidArgument(f"{tag_name(keyword)} is missing; an image must have it",
                                  where)
        return default
    if len(values) != 1 or values[0] != int(values[0]):
        raise InvalidArgument(f"{tag_name(keyword)} must be one integer", where)
    return int(values[0])


def _positive(values: tuple[float, ...] | None) -> float | None:
    return values[0] if values and values[0] > 0 else None


def transfer_syntax(ds: Dataset) -> str:
    uid = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) else None
    if uid:
        return str(uid)
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little or little is None else ExplicitVRBigEndian


def _describe(ds: Dataset, buffer: bytes | None, where: str, max_voxels: int) -> _Part:
    """Check the image pixel module, the Pixel Data element and the geometry of one part."""
    pixel_tag = next((t for t in PIXEL_TAGS if t in ds), None)
    if pixel_tag is None:
        if buffer is not None and (b"\xe0\x7f\x10\x00" in buffer or b"\x7f\xe0\x00\x10" in buffer):
            raise InvalidArgument("the file is truncated inside its Pixel Data (7FE0,0010); "
                                  "send the complete file", where)
        sop = UID(str(ds.get("SOPClassUID", "") or ""))
        sop = f" (SOP class: {sop.name})" if sop and sop.name != str(sop) else ""
        raise InvalidArgument(
            f"has no Pixel Data (7FE0,0010){sop}: it is not an image (for example a structured "
            "report or an RT structure set); send image files such as CT or MR", where)
    samples = header_int(ds, "SamplesPerPixel", where, default=1)
    if samples != 1:
        raise InvalidArgument(f"colour images are not supported: SamplesPerPixel (0028,0002) is "
                              f"{samples}; send grayscale images (SamplesPerPixel 1)", where)
    photometric = str(header_value(ds, "PhotometricInterpretation", where) or "MONOCHROME2").strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InvalidArgument("PhotometricInterpretation (0028,0004) is neither MONOCHROME1 nor "
                              "MONOCHROME2 (a colour or palette image); send grayscale images",
                              where)
    if "ModalityLUTSequence" in ds:
        raise InvalidArgument("images with a Modality LUT Sequence (0028,3000) are not supported; "
                              "send images that use RescaleSlope/RescaleIntercept", where)
    rows, cols = header_int(ds, "Rows", where), header_int(ds, "Columns", where)
    frames = header_int(ds, "NumberOfFrames", where, default=1)
    if not (0 < rows <= _MAX_EDGE and 0 < cols <= _MAX_EDGE and 0 < frames <= _MAX_FRAMES):
        raise InvalidArgument(
            f"absurd image size {frames} x {rows} x {cols} (frames x rows x columns); rows and "
            f"columns must be 1..{_MAX_EDGE} and frames 1..{_MAX_FRAMES}", where)
    if rows * cols * frames > max_voxels:
        raise InvalidArgument(f"the image has {frames} x {rows} x {cols} voxels, more than the "
                              f"limit of {max_voxels} of this server; send a smaller image", where)
    floating = pixel_tag != 0x7FE00010
    allocated = header_int(ds, "BitsAllocated", where,
                           default=64 if pixel_tag == 0x7FE00009 else None)
    stored = allocated if floating else header_int(ds, "BitsStored", where, default=allocated)
    signed = floating or header_int(ds, "PixelRepresentation", where, default=0) == 1
    if (allocated != {0x7FE00008: 32, 0x7FE00009: 64}.get(pixel_tag, allocated)
            or allocated not in (1, 8, 16, 32, 64) or not 0 < stored <= allocated
            or (allocated == 64 and not floating)):
        raise InvalidArgument(f"unsupported bit depth: BitsAllocated (0028,0100) {allocated}, "
                              f"BitsStored (0028,0101) {stored}", where)
    desc = _Part(rows, cols, frames, allocated, stored, signed, floating, transfer_syntax(ds))
    _check_pixel_bytes(ds, desc, pixel_tag, buffer, where)
    _geometry(ds, desc, where)
    return desc


def _check_pixel_bytes(ds: Dataset, desc: _Part, tag: int, buffer: bytes | None,
                       where: str) -> None:
    uid = UID(desc.transfer_syntax)
    name = uid.name if uid.name != str(uid) else "an unknown transfer syntax"
    try:
        compressed = uid.is_compressed
    except ValueError:  # an unregistered private transfer syntax
        compressed = True
    raw = ds.get_item(tag, keep_deferred=True)
    value = raw.value if isinstance(raw, RawDataElement) else ds[tag].value
    length = raw.length if isinstance(raw, RawDataElement) else len(value or b"")
    expected = (desc.rows * desc.cols * desc.frames * desc.bits_allocated + 7) // 8
    if compressed:
        try:
            available = get_decoder(uid).is_available
        except NotImplementedError:
            available = False
        if not available:
            raise InvalidArgument(f"the pixel data uses {name}, which this server cannot decode; "
                                  "send it uncompressed or as JPEG, JPEG-LS, JPEG 2000 or RLE",
                                  where)
        if length != 0xFFFFFFFF:
            raise InvalidArgument(f"the pixel data of {name} is not encapsulated; the file is "
                                  "damaged, re-export it", where)
        if value is None:  # deferred by a header-only read: walk the fragments in place
            value = io.BytesIO(buffer or b"")
            value.seek(raw.value_tell)
        fragments = parse_fragments(value)[0] - 1  # less the Basic Offset Table item
        if fragments < desc.frames:
            raise InvalidArgument(f"the encapsulated pixel data holds {max(fragments, 0)} "
                                  f"fragments for {desc.frames} frames; the file is truncated or "
                                  "damaged", where)
    elif length == 0xFFFFFFFF:
        raise InvalidArgument(f"the pixel data is encapsulated but the transfer syntax is {name}; "
                              "the file is damaged, re-export it", where)
    elif length < expected:
        raise InvalidArgument(
            f"the Pixel Data holds {length} bytes but Rows x Columns x NumberOfFrames x "
            f"BitsAllocated/8 = {desc.rows} x {desc.cols} x {desc.frames} x "
            f"{desc.bits_allocated}/8 needs {expected}; the file is truncated or its header is "
            "wrong", where)


def _item(holders: tuple, sequence: str, where: str) -> Dataset | None:
    """The first item of `sequence` in the per-frame, else the shared, functional group."""
    for holder in holders:
        seq = header_value(holder, sequence, where) if holder is not None else None
        if seq:
            return seq[0]
    return None


def unit_normal(orientation: np.ndarray | None) -> np.ndarray | None:
    """The unit normal of an ImageOrientationPatient (row and column cosines), or None
    when there is none or the two directions are (nearly) parallel."""
    if orientation is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    size = np.linalg.norm(normal)
    return normal / size if size > 0.5 else None


def _geometry(ds: Dataset, desc: _Part, where: str) -> None:
    """Fill in positions, orientation, spacing and rescale of each frame of one part."""
    shared = (header_value(ds, "SharedFunctionalGroupsSequence", where) or [None])[0]
    per_frame = header_value(ds, "PerFrameFunctionalGroupsSequence", where)
    if per_frame is not None and len(per_frame) < desc.frames:
        per_frame = None  # incomplete: ignore it rather than guess which item is which frame
    holders = [(per_frame[i] if per_frame else None, shared) for i in range(desc.frames)]
    iop = header_floats(_item(holders[0], "PlaneOrientationSequence", where) or ds,
                  "ImageOrientationPatient", where, 6)
    desc.orientation = np.array(iop) if iop else None
    measures = _item(holders[0], "PixelMeasuresSequence", where)
    for holder, keyword in ((measures, "PixelSpacing"), (ds, "PixelSpacing"),
                            (ds, "ImagerPixelSpacing")):
        if holder is not None and desc.pixel_spacing is None:
            desc.pixel_spacing = header_floats(holder, keyword, where, 2)
    for holder in (measures, ds):
        if holder is not None:
            desc.thickness = desc.thickness or _positive(
                header_floats(holder, "SliceThickness", where))
            desc.between = desc.between or _positive(
                header_floats(holder, "SpacingBetweenSlices", where))
    items = [_item(h, "PlanePositionSequence", where) for h in holders]
    positions = [header_floats(i, "ImagePositionPatient", where, 3) if i else None
                 for i in items]
    if all(positions):
        desc.positions = [np.array(p) for p in positions]
    else:
        desc.positions = _classic_positions(ds, desc.frames, unit_normal(desc.orientation), where)
    desc.rescale = [(1.0, 0.0)] * desc.frames
    if not desc.floating:  # RT Dose scales its values by DoseGridScaling
        dose = ds.get("SOPClassUID") == _RT_DOSE and _positive(
            header_floats(ds, "DoseGridScaling", where))
        desc.rescale = [_rescale(_item(h, "PixelValueTransformationSequence", where) or ds,
                                 dose or 1.0, where) for h in holders]


def _classic_positions(ds: Dataset, frames: int, normal, where: str) -> list[np.ndarray] | None:
    ipp = header_floats(ds, "ImagePositionPatient", where, 3)
    if ipp is None or frames == 1:
        return None if ipp is None else [np.array(ipp)]
    offsets = header_floats(ds, "GridFrameOffsetVector", where)  # RT Dose
    if offsets is None or normal is None or len(offsets) != frames:
        return None
    base = 0.0 if offsets[0] == 0 else float(np.dot(ipp, normal))  # relative, or absolute z
    return [np.array(ipp) + (o - base) * normal for o in offsets]


def _rescale(holder: Dataset, default_slope: float, where: str) -> tuple[float, float]:
    if "RescaleSlope" not in holder and "RescaleIntercept" not in holder:
        mapped = _value_mapping(holder, where)
        if mapped is not None:
            return mapped
    slope = (header_floats(holder, "RescaleSlope", where, 1) or (default_slope,))[0]
    if slope == 0:
        raise InvalidArgument("RescaleSlope (0028,1053) is 0; it must be a non-zero number", where)
    return slope, (header_floats(holder, "RescaleIntercept", where, 1) or (0.0,))[0]


def _value_mapping(holder: Dataset, where: str) -> tuple[float, float] | None:
    """The slope and intercept of an image without a Modality LUT whose one Real World
    Value Mapping item is linear (as an MR image with non-integer values is written)."""
    items = header_value(holder, "RealWorldValueMappingSequence", where) or []
    if len(items) != 1 or "RealWorldValueSlope" not in items[0]:
        return None
    slope = header_floats(items[0], "RealWorldValueSlope", where, 1)
    intercept = header_floats(items[0], "RealWorldValueIntercept", where, 1)
    if not slope or not slope[0]:
        return None
    return slope[0], (intercept or (0.0,))[0]


# -- putting the parts together ------------------------------------------------------------


def _stored_dtype(desc: _Part) -> np.dtype:
    if desc.floating:
        return np.dtype(f"float{desc.bits_allocated}")
    if desc.bits_allocated == 1:
        return np.dtype(np.uint8)
    return np.dtype(f"{'int' if desc.signed else 'uint'}{desc.bits_allocated}")


def _output_dtype(desc: _Part, rescale: list[tuple[float, float]]) -> np.dtype:
    """The stored dtype, int16 or int32 when every slope is 1 and intercept whole, else float32."""
    stored, intercepts = _stored_dtype(desc), [b for _, b in rescale]
    if desc.floating:
        return stored
    if {s for s, _ in rescale} != {1.0} or any(b != int(b) for b in intercepts):
        return np.dtype(np.float32)
    bits = desc.bits_stored
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if desc.signed else (0, 2**bits - 1)
    low, high = low + int(min(intercepts)), high + int(max(intercepts))
    for candidate in (stored, np.dtype(np.int16), np.dtype(np.int32)):
        if np.iinfo(candidate).min <= low and high <= np.iinfo(candidate).max:
            return candidate
    return np.dtype(np.float32)


def _assemble(datasets: list[Dataset], descs: list[_Part], field: str) -> Volume:
    first = descs[0]
    if len(datasets) > 1:
        _check_series(datasets, descs, field)
        order = _series_order(datasets, descs, field)
        slices = [(p, 0) for p in order]
    else:
        order, slices = [0], [(0, f) for f in range(first.frames)]
    positions = None
    if all(descs[p].positions is not None for p in order):
        positions = np.array([descs[p].positions[f] for p, f in slices])
    n = len(slices)
    step = _slice_spacing(positions, unit_normal(first.orientation)) if n > 1 else None
    step = step or first.between or first.thickness
    rescale = [descs[p].rescale[f] for p, f in slices]
    spacing = None
    if first.pixel_spacing is not None and (n == 1 or step):
        spacing = tuple(float(s) for s in ((step,) if n > 1 else ()) + first.pixel_spacing)
    ds = datasets[0]
    info = DicomInfo(
        shape=(n, first.rows, first.cols) if n > 1 else (first.rows, first.cols),
        dtype=_output_dtype(first, rescale), spacing=spacing,
        modality=str(ds.get("Modality", "") or ""), n_parts=len(datasets),
        sop_class_uid=str(ds.get("SOPClassUID", "") or ""), order=tuple(order),
        transfer_syntax_uid=first.transfer_syntax, stored_dtype=_stored_dtype(first),
        rescaled=any(r != (1.0, 0.0) for r in rescale))
    return Volume(info, datasets, slices, rescale, positions, first.orientation,
                  first.pixel_spacing, first.thickness)


def _check_series(datasets: list[Dataset], descs: list[_Part], field: str) -> None:
    series = {str(ds.get("SeriesInstanceUID", "") or "") for ds in datasets}
    if len(series) > 1:
        raise InvalidArgument(
            f"the {len(datasets)} files belong to {len(series)} different series "
            "(SeriesInstanceUID); send the files of one series per request", field)
    seen: dict[str, int] = {}
    first = descs[0]
    for i, (ds, desc) in enumerate(zip(datasets, descs, strict=True)):
        where = f"{field}[{i}]"
        if desc.frames != 1:
            raise InvalidArgument(
                f"is a multi-frame file ({desc.frames} frames) sent with {len(datasets) - 1} other "
                "files; send a multi-frame file alone, or a series of single-frame files", where)
        if (desc.rows, desc.cols) != (first.rows, first.cols):
            raise InvalidArgument(
                f"has {desc.rows} x {desc.cols} pixels but the first file has {first.rows} x "
                f"{first.cols}; all slices of a series must have the same rows and columns", where)
        if _stored_dtype(desc) != _stored_dtype(first) or desc.bits_stored != first.bits_stored:
            raise InvalidArgument(
                "stores its pixels with a different BitsAllocated/BitsStored/PixelRepresentation "
                "than the first file; all slices of a series must use the same pixel format", where)
        if not (_close(desc.pixel_spacing, first.pixel_spacing)
                and _close(desc.orientation, first.orientation)):
            raise InvalidArgument(
                "has a different PixelSpacing or ImageOrientationPatient than the first file; a "
                "series must be one stack of parallel, equally sampled slices", where)
        uid = str(ds.get("SOPInstanceUID", "") or "")
        if uid and uid in seen:
            raise InvalidArgument(f"is the same instance (SOPInstanceUID) as {field}[{seen[uid]}];"
                                  " send each file once", where)
        seen[uid] = i


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-4, atol=1e-4))


def _series_order(datasets: list[Dataset], descs: list[_Part], field: str) -> list[int]:
    """Along the slice normal; without geometry by InstanceNumber; else as sent."""
    normal = unit_normal(descs[0].orientation)
    if normal is not None and all(d.positions is not None for d in descs):
        along = np.array([float(np.dot(d.positions[0], normal)) for d in descs])
        order = [int(i) for i in np.argsort(along, kind="stable")]
        for a, b in itertools.pairwise(order):
            if abs(along[b] - along[a]) < 1e-3:
                raise InvalidArgument(
                    f"has the same slice position as {field}[{a}] (ImagePositionPatient along the "
                    "slice normal); a series must not hold the same slice twice", f"{field}[{b}]")
        return order
    missing = -(2**63)
    numbers = [header_int(ds, "InstanceNumber", f"{field}[{i}]", default=missing)
               for i, ds in enumerate(datasets)]
    if missing in numbers or len(set(numbers)) != len(numbers):
        return list(range(len(datasets)))
    return sorted(range(len(datasets)), key=numbers.__getitem__)


def _slice_spacing(positions: np.ndarray | None, normal: np.ndarray | None) -> float | None:
    """Median step between slices; None unless they are stacked one way along the normal."""
    if positions is None:
        return None
    if normal is None:
        steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    else:
        steps = np.diff(positions @ normal)
        if not (np.all(steps > 1e-6) or np.all(steps < -1e-6)):
            return None  # e.g. the repeated positions of a multi-frame time series
    spacing = float(np.median(np.abs(steps)))
    return spacing if spacing > 1e-6 else None
