"""Write a processing result as a derived DICOM series (from a ``dicom.volume.Volume``).

Output, always Explicit VR Little Endian, uncompressed, with file meta:

- a new SeriesInstanceUID for the whole output and a new SOPInstanceUID per file, the
  StudyInstanceUID and the patient and study modules of the source, ImageType
  DERIVED\\SECONDARY (and the third value CT and MR require; DERIVED\\PRIMARY in PET), a
  DerivationDescription, a Source Image Sequence; what the IOD requires, as dciodvfy
  checks it (docs/conformance.md, "IODs created");
- 16-bit pixels: integer results that fit int16 (or uint16) are stored as they are;
  anything else (floats, wider integers) is mapped linearly onto the 16-bit range with a
  RescaleSlope/RescaleIntercept, so ``stored * slope + intercept`` gives the value back to
  within (max - min) / 65535; NaN is written as 0. MR, whose IOD has no Modality LUT,
  carries the mapping as a Real World Value Mapping instead; PET, whose Rescale
  Intercept is 0, a slope alone (within max(|min|, |max|) / 32767);
- one file per slice keeps the SOP class of the source when it is a classic single-frame
  image (CT, MR, PET, CR, SC) and the result keeps its geometry, else it is Secondary
  Capture; ``single_file`` with several slices writes one Multi-frame Grayscale Word
  Secondary Capture image (unsigned 16-bit, as that IOD requires), with the geometry in
  its functional groups (Plane Position per frame, Plane Orientation and Pixel Measures
  shared) and the slice positions in its Slice Location Vector.
"""

from __future__ import annotations

import copy
import datetime
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from medcompute.server.dicom.instance import check_instances
from medcompute.server.dicom.meta import first_number
from medcompute.server.dicom.volume import Volume, load, quiet_pydicom, unit_normal

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
MULTIFRAME_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
# classic single-frame image classes a derived slice can keep when its geometry is known
_KEEP_CLASS = {
    CT_IMAGE,  # CT Image Storage
    MR_IMAGE,  # MR Image Storage
    PET_IMAGE,  # Positron Emission Tomography Image Storage
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    SECONDARY_CAPTURE,
}
_LOSSY_METHOD = {  # lossy transfer syntax -> Lossy Image Compression Method
    "1.2.840.10008.1.2.4.50": "ISO_10918_1", "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1", "1.2.840.10008.1.2.4.91": "ISO_15444_1",
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",
}
# copied from the source into every output (patient, study, series-level facts)
_COPIED = (
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "TypeOfPatientID",
    "IssuerOfPatientIDQualifiersSequence", "PatientBirthDate", "PatientBirthTime", "PatientSex",
    "OtherPatientIDsSequence", "PatientComments", "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence", "PatientBreedDescription", "PatientBreedCodeSequence",
    "ResponsiblePerson", "ResponsibleOrganization", "PatientIdentityRemoved",
    "DeidentificationMethod", "DeidentificationMethodCodeSequence", "QualityControlSubject",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber", "IssuerOfAccessionNumberSequence", "StudyDescription",
    "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "ProcedureCodeSequence",
    "ReferencedStudySequence", "AdmittingDiagnosesDescription", "PatientAge", "PatientSize",
    "PatientWeight", "Modality", "BodyPartExamined", "Laterality", "PatientPosition",
)
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")
# replaced, or no longer true of a derived image, when a whole source header is copied
_NOT_COPIED = {Tag(k) for k in (
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription",
    "SeriesDate", "SeriesTime", "ContentDate", "ContentTime", "InstanceCreationDate",
    "InstanceCreationTime", "InstanceNumber", "ImageType", "DerivationDescription",
    "DerivationCodeSequence", "SourceImageSequence", "ReferencedImageSequence",
    "ReferencedInstanceSequence", "ImagePositionPatient", "ImageOrientationPatient",
    "SliceLocation", "SliceThickness", "SpacingBetweenSlices", "ImagesInAcquisition",
    "IconImageSequence", "ImageComments", "Manufacturer", "ManufacturerModelName",
    "SoftwareVersions", "DeviceSerialNumber", "StationName", "FrameOfReferenceUID",
    "PositionReferenceIndicator", "DimensionOrganizationSequence", "DimensionIndexSequence",
)}
_MAX_REFERENCES = 256


def derived_uid() -> str:
    """A new UID for a derived series or instance."""
    return generate_uid()


def write_derived(parts: Sequence[bytes | memoryview], array: np.ndarray, *,
                  spacing: tuple[float, ...] | None, description: str, single_file: bool,
                  field: str = "input.dicom", series: Series | None = None,
                  vol: Volume | None = None) -> list[bytes]:
    """Write `array`, computed from the DICOM `parts`, as a derived series.

    Parameters
    ----------
    parts : sequence of bytes
        The source files, as given to ``dicom.read.decode``.
    array : numpy.ndarray
        The result: the source grid, a 2-D image (a projection) or a stack of slices.
    spacing : tuple of float or None
        mm per axis of `array`.
    description : str
        The operations applied, stored as DerivationDescription (ASCII, 1024 characters).
    single_file : bool
        One (multi-frame) file instead of one file per slice.
    series : Series, optional
        Write only the slices ``series.slices`` of one derived series whose UID and time
        ``series`` names, so that several processes can write one series' files in parts
        (one file per slice only). By default: every slice of a new series.
    vol : Volume, optional
        What ``dicom.volume.load`` made of `parts` and ``dicom.instance.check_instances``
        passed, if that was done already (``worker.header_cache``); its datasets may
        lack their pixel data.

    Returns
    -------
    list of bytes
        DICOM files (Part 10), in slice order.

    Raises
    ------
    InvalidArgument
        When `parts` cannot be read or their geometry is unusable (as
        ``dicom.read.read_info``).
    ValueError
        When `array` or `spacing` is malformed (a fault of the caller's code).
    """
    with quiet_pydicom():
        if vol is None:
            vol = load(parts, max_voxels=2**63, field=field)
            check_instances(vol, field, identity=False)
        return _write(vol, array, spacing=spacing, description=description,
                      single_file=single_file, series=series)


@dataclass(frozen=True)
class Series:
    """One derived series written in parts: its UID, its creation time (Unix seconds) and
    the slices ``[start, stop)`` of this part."""

    uid: str
    created: float
    slices: tuple[int, int]


def _write(vol: Volume, array, *, spacing, description: str, single_file: bool,
           series: Series | None = None) -> list[bytes]:
    array = np.asarray(array)
    if array.ndim not in (2, 3) or array.size == 0:
        raise ValueError(f"expected a non-empty 2-D or 3-D result, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or \
            np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"expected a real-valued result, got dtype {array.dtype}")
    if spacing is not None:
        spacing = tuple(float(s) for s in spacing)
        if len(spacing) != array.ndim or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"spacing {spacing} must hold one positive number per axis of "
                             f"the {array.ndim}-D result")
    stack = array.reshape((-1, *array.shape[-2:]))
    geometry = _Plan(vol, array.shape, spacing)
    multi = single_file and stack.shape[0] > 1
    source_class = vol.info.sop_class_uid
    keep = (source_class in _KEEP_CLASS and geometry.complete and not multi)
    sop_class = MULTIFRAME_WORD_SC if multi else source_class if keep else SECONDARY_CAPTURE
    first = vol.datasets[vol.slices[0][0]]
    if series is not None and multi:
        raise ValueError("a multi-frame result is one file: it is not written in parts")
    shared = {
        "series": series.uid if series else derived_uid(),
        "now": datetime.datetime.fromtimestamp(series.created) if series else
        datetime.datetime.now(), "class": sop_class,
        "description": _clean(description),
        "coding": _Coding(stack, unsigned=multi, no_intercept=keep and sop_class == PET_IMAGE),
        "keep": keep,
        "frame_of_reference": first.get("FrameOfReferenceUID") or _made(series, "frame"),
        "study": first.get("StudyInstanceUID") or _made(series, "study"),
        "lossy": _lossy(vol),
    }
    shared["window"] = _window(first, stack, shared["coding"])
    if multi:
        return [_multiframe(vol, stack, geometry, shared)]
    start, stop = series.slices if series else (0, stack.shape[0])
    return [_single(vol, stack, k, geometry, shared) for k in range(start, stop)]


def _made(series: Series | None, what: str) -> str:
    """A UID the source lacks: new, or the same in every part of ``series``."""
    return generate_uid(entropy_srcs=[series.uid, what]) if series else derived_uid()


class _Plan:
    """Where each output slice lies: the source geometry, kept as far as it still holds."""

    def __init__(self, vol: Volume, shape: tuple[int, ...], spacing: tuple[float, ...] | None):
        n = shape[0] if len(shape) == 3 else 1
        source = vol.info.shape
        self.same = tuple(shape) == tuple(source)
        self.orientation = self.positions = self.thickness = self.between = None
        self.pixel_spacing = tuple(spacing[-2:]) if spacing else None
        if self.same:
            self.orientation, self.pixel_spacing = vol.orientation, vol.pixel_spacing
            self.positions, self.thickness = vol.positions, vol.thickness
            self.between = vol.info.spacing[0] if len(source) == 3 and vol.info.spacing else None
        elif tuple(shape[-2:]) == tuple(source[-2:]):
            self.orientation = vol.orientation
            self.pixel_spacing = self.pixel_spacing or vol.pixel_spacing
            step = spacing[0] if spacing and len(shape) == 3 else None
            self.thickness = self.between = step
            direction = self._direction(vol) if vol.positions is not None else None
            if vol.positions is not None and n == 1:
                self.positions = vol.positions[:1]
            elif direction is not None and step:
                self.positions = vol.positions[0] + np.outer(np.arange(n) * step, direction)
        elif spacing and len(shape) == 3:
            self.thickness = self.between = spacing[0]
        self.normal = unit_normal(self.orientation)
        self.complete = (self.positions is not None and self.orientation is not None
                         and self.pixel_spacing is not None)

    def _direction(self, vol: Volume) -> np.ndarray | None:
        """Unit vector from the first source slice towards the last one."""
        step = vol.positions[-1] - vol.positions[0]
        if np.linalg.norm(step) > 1e-6:
            return step / np.linalg.norm(step)
        return unit_normal(vol.orientation)

    def location(self, k: int) -> float | None:
        if self.positions is not None and self.normal is not None:
            return float(np.dot(self.positions[k], self.normal))
        return k * self.between if self.between else None


class _Coding:
    """How result values become 16-bit stored values: dtype, slope and intercept."""

    def __init__(self, stack: np.ndarray, *, unsigned: bool, no_intercept: bool = False):
        if stack.dtype == bool:
            stack = stack.view(np.uint8)
        self.dtype = np.dtype(np.uint16 if unsigned else np.int16)
        limits = np.iinfo(self.dtype)
        self.integer = np.issubdtype(stack.dtype, np.integer)
        if self.integer:
            lo, hi = int(stack.min()), int(stack.max())
        else:
            finite = np.isfinite(stack)
            lo = float(np.min(stack, where=finite, initial=np.inf)) if finite.any() else 0.0
            hi = float(np.max(stack, where=finite, initial=-np.inf)) if finite.any() else 0.0
            if not finite.all():  # NaN is written as 0: keep 0 inside the range
                lo, hi = min(lo, 0.0), max(hi, 0.0)
        self.lo, self.hi = lo, hi
        if self.integer and lo >= 0 and hi <= 65535 and (unsigned or hi > 32767):
            self.dtype, self.slope, self.intercept = np.dtype(np.uint16), 1.0, 0.0
        elif self.integer and limits.min <= lo and hi <= limits.max:
            self.slope, self.intercept = 1.0, 0.0
        elif self.integer and hi - lo <= 65535 and not no_intercept:  # exact: a shift
            self.slope, self.intercept = 1.0, float(lo - int(limits.min))
        elif no_intercept:  # a slope alone (PET's Rescale Intercept is 0)
            self.integer = False
            if lo >= 0:
                self.dtype = np.dtype(np.uint16)
            step = max(abs(lo), abs(hi)) / int(np.iinfo(self.dtype).max)
            self.slope = float(format_number_as_ds(step * 1.000001)) if step else 1.0
            self.intercept = 0.0
        else:
            self.integer = False
            slope = float(format_number_as_ds((hi - lo) / 65535.0)) if hi > lo else 1.0
            self.slope = slope or 1.0
            self.intercept = float(format_number_as_ds(lo - self.slope * int(limits.min)))
        self.signed = self.dtype == np.int16

    def stored(self, value: float) -> float:
        """The stored value of a result value."""
        return (value - self.intercept) / self.slope

    def encode(self, values: np.ndarray) -> bytes:
        """Stored little-endian bytes of `values`."""
        if values.dtype == bool:
            values = values.view(np.uint8)
        if self.integer:
            stored = values.astype(np.int64) - int(self.intercept) if self.intercept else values
        else:
            limits = np.iinfo(self.dtype)
            real = values.astype(np.float64)
            if not np.isfinite(real).all():
                real = np.nan_to_num(real, copy=False, nan=0.0, posinf=self.hi,
                                     neginf=self.lo)
            stored = np.clip(np.rint((real - self.intercept) / self.slope), limits.min,
                             limits.max)
        return stored.astype(self.dtype.newbyteorder("<")).tobytes()


def _clean(description: str) -> str:
    text = re.sub(r"[\x00-\x1f\x7f\\]", " ", str(description)).encode("ascii", "replace").decode()
    return text[:1024]


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def _base(vol: Volume, source: Dataset, shared: dict) -> Dataset:
    """The header every output file starts from."""
    ds = Dataset()
    if shared["keep"]:  # the whole source header, less what is replaced or no longer true
        for tag in list(source.keys()):
            raw = source.get_item(tag, keep_deferred=True)
            group = tag >> 16
            if not (tag.is_private or group in (0x0002, 0x0028, 0xFFFA, 0xFFFC)
                    or 0x5000 <= group <= 0x7FFF or tag in _NOT_COPIED):
                _copy(source, ds, tag, empty=isinstance(raw, RawDataElement)
                      and raw.value is None)
    else:
        for keyword in _COPIED:
            if keyword in source:
                _copy(source, ds, Tag(keyword))
        ds.ConversionType = "WSD"
        ds.PatientOrientation = ""
        ds.RescaleType = "US"
        if "Laterality" not in ds and "BodyPartExamined" not in ds:
            ds.Laterality = ""  # type 2C: unknown, as the body part is
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    now, coding = shared["now"], shared["coding"]
    ds.Modality = ds.get("Modality") or "OT"
    ds.StudyInstanceUID = shared["study"]
    ds.SOPClassUID = shared["class"]
    ds.SeriesInstanceUID = shared["series"]
    ds.ImageType = _image_type(source, shared["keep"])
    ds.SeriesDescription = "medcompute derived"
    ds.SeriesNumber = 1000 + _series_number(source)
    ds.DerivationDescription = shared["description"]
    ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.Manufacturer = ds.ManufacturerModelName = "medcompute"
    lossy, method = shared["lossy"]
    if lossy or method:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = method or ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if coding.signed else 0
    lo, hi = shared["window"]
    if ds.SOPClassUID != MR_IMAGE:
        ds.RescaleIntercept, ds.RescaleSlope = _ds(coding.intercept), _ds(coding.slope)
    elif coding.slope != 1.0 or coding.intercept != 0.0:
        # the MR Image IOD has no Modality LUT: the values are mapped by a Real World Value
        # Mapping instead, and the window is in stored values, as a viewer applies it
        ds.RealWorldValueMappingSequence = [_value_mapping(coding)]
        lo, hi = coding.stored(lo), coding.stored(hi)
    ds.WindowCenter = _ds((lo + hi) / 2)
    ds.WindowWidth = _ds(max(hi - lo, 1.0))
    return ds


#: Values sampled from a result for its window (at most about this many).
_WINDOW_SAMPLE = 1 << 20


def _window(source: Dataset, stack: np.ndarray, coding: _Coding) -> tuple[float, float]:
    """The lowest and highest result value of the derived series' window (VOI LUT).

    The source's window (its first Window Center/Width) when the result's values fill at
    least half of it: a filtered image, a projection, a resampling keep the units of the
    source and are shown as the source was. Otherwise the range of the middle 99 % of the
    result's values (a sample of at most ``_WINDOW_SAMPLE``), so that a few extreme
    values do not wash the image out; the whole range where that is one value (a mask)."""
    step = max(1, int(np.ceil(np.sqrt(stack.size / _WINDOW_SAMPLE))))
    sample = stack[:, ::step, ::step]
    if sample.dtype == bool:
        sample = sample.view(np.uint8)
    sample = sample[np.isfinite(sample)] if not coding.integer else sample.ravel()
    if sample.size == 0:
        return coding.lo, coding.hi
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = coding.lo, coding.hi
    center = first_number(source.get("WindowCenter"))
    width = first_number(source.get("WindowWidth"))
    if center is not None and width is not None and width >= 1:
        low, high = center - width / 2, center + width / 2
        if min(high, hi) - max(low, lo) >= width / 2:
            return low, high
    return lo, hi


def _image_type(source: Dataset, keep: bool) -> list[str]:
    """DERIVED\\SECONDARY, and where the source's IOD is kept (CT and MR require a third
    value), the source's third value (CT: AXIAL or LOCALIZER), else AXIAL for CT and
    OTHER for the rest; DERIVED\\PRIMARY for PET, whose second value is PRIMARY."""
    if not keep:
        return ["DERIVED", "SECONDARY"]
    if source.get("SOPClassUID") == PET_IMAGE:  # value 2 is PRIMARY in PET
        return ["DERIVED", "PRIMARY"]
    values = source.get("ImageType")
    values = [values] if isinstance(values, str) else list(values or [])
    third = str(values[2]).strip() if len(values) > 2 and str(values[2]).strip() else \
        ("AXIAL" if source.get("SOPClassUID") == CT_IMAGE else "OTHER")
    return ["DERIVED", "SECONDARY", third]


def _value_mapping(coding: _Coding) -> Dataset:
    """One Real World Value Mapping item: stored values [first, last] to result values."""
    item = Dataset()
    limits = np.iinfo(coding.dtype)
    item.RealWorldValueFirstValueMapped = int(limits.min)
    item.RealWorldValueLastValueMapped = int(limits.max)
    item.RealWorldValueIntercept = coding.intercept
    item.RealWorldValueSlope = coding.slope
    item.LUTExplanation = "medcompute result values"
    item.LUTLabel = "MEDCOMPUTE"
    units = Dataset()
    units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = "1", "UCUM", "no units"
    item.MeasurementUnitsCodeSequence = [units]
    return item


def _lossy(vol: Volume) -> tuple[bool, str | None]:
    """Whether a source was lossy compressed, and how (once per series)."""
    lossy = [d for d in vol.datasets if d.get("LossyImageCompression") == "01"]
    method = lossy[0].get("LossyImageCompressionMethod") if lossy else None
    return bool(lossy), method or _LOSSY_METHOD.get(vol.info.transfer_syntax_uid)


def _copy(source: Dataset, target: Dataset, tag, *, empty: bool = False) -> None:
    """Copy one element; one that cannot be read is left out (its value is never shown);
    an `empty` one (a type 2 element without a value) stays empty.

    A sequence is copied deeply; any other element shares its value (a string, a number or
    bytes), with its own list where it has several: the output's elements are replaced,
    never changed in place."""
    try:
        elem = source[tag]
        if empty and elem.VR != "SQ":
            target.add(DataElement(elem.tag, elem.VR, None))
            return
        if elem.VR == "SQ":
            target.add(copy.deepcopy(elem))
            return
        value = elem.value
        target.add(DataElement(elem.tag, elem.VR, list(value) if isinstance(value, MultiValue)
                               else value, is_undefined_length=elem.is_undefined_length))
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001, S110 - a damaged source value: the output goes without it
        pass


def _series_number(source: Dataset) -> int:
    try:
        return min(max(int(float(source.get("SeriesNumber") or 0)), 0), 2**30)
    except (TypeError, ValueError):
        return 0


def _references(vol: Volume, slices: list[tuple[int, int]]) -> DicomSequence:
    frames: dict[int, list[int]] = {}
    for part, frame in slices:
        frames.setdefault(part, []).append(frame + 1)
    items = []
    for part, numbers in frames.items():
        source = vol.datasets[part]
        if not (source.get("SOPClassUID") and source.get("SOPInstanceUID")):
            continue
        item = Dataset()
        item.ReferencedSOPClassUID = source.SOPClassUID
        item.ReferencedSOPInstanceUID = source.SOPInstanceUID
        total = int(source.get("NumberOfFrames") or 1)
        if total > 1 and len(numbers) < total:
            item.ReferencedFrameNumber = numbers
        items.append(item)
    return DicomSequence(items)


def _place(ds: Dataset, geometry: _Plan, k: int, source: Dataset, shared: dict) -> None:
    """Write the Image Plane attributes of slice `k` into `ds`."""
    if geometry.positions is not None and geometry.orientation is not None:
        ds.ImagePositionPatient = [_ds(v) for v in geometry.positions[k]]
        ds.ImageOrientationPatient = [_ds(v) for v in geometry.orientation]
        ds.FrameOfReferenceUID = shared["frame_of_reference"]
        ds.PositionReferenceIndicator = source.get("PositionReferenceIndicator", "")
        ds.SliceLocation = _ds(geometry.location(k))
    if geometry.pixel_spacing is not None:
        ds.PixelSpacing = [_ds(v) for v in geometry.pixel_spacing]
    if geometry.thickness:
        ds.SliceThickness = _ds(geometry.thickness)
    if geometry.between:
        ds.SpacingBetweenSlices = _ds(geometry.between)


def _single(vol: Volume, stack: np.ndarray, k: int, geometry: _Plan, shared: dict) -> bytes:
    source_slice = vol.slices[k] if geometry.same else vol.slices[0]
    source = vol.datasets[source_slice[0]]
    ds = _base(vol, source, shared)
    ds.InstanceNumber = k + 1
    _place(ds, geometry, k, source, shared)
    if shared["keep"] and "SliceThickness" not in ds:
        ds.SliceThickness = ""  # type 2 in the Image Plane module
    if geometry.same:
        ds.SourceImageSequence = _references(vol, [source_slice])
    elif len(vol.datasets) <= _MAX_REFERENCES:
        ds.SourceImageSequence = _references(vol, vol.slices)
    return _finish(ds, stack[k], shared)


def _multiframe(vol: Volume, stack: np.ndarray, geometry: _Plan, shared: dict) -> bytes:
    source = vol.datasets[vol.slices[0][0]]
    ds = _base(vol, source, shared)
    n = stack.shape[0]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = n
    ds.BurnedInAnnotation = "NO"
    ds.PresentationLUTShape = "IDENTITY"
    locations = [geometry.location(k) for k in range(n)]
    if all(v is not None for v in locations):
        ds.SliceLocationVector = [_ds(v) for v in locations]
        ds.FrameIncrementPointer = Tag("SliceLocationVector")
    else:
        ds.FrameLabelVector = [str(k + 1) for k in range(n)]
        ds.FrameIncrementPointer = Tag("FrameLabelVector")
    if geometry.positions is not None and geometry.orientation is not None:
        measures, orientation = Dataset(), Dataset()
        single = Dataset()
        _place(single, geometry, 0, source, shared)
        for keyword in ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"):
            if keyword in single:
                setattr(measures, keyword, single[keyword].value)
        orientation.ImageOrientationPatient = single.ImageOrientationPatient
        group = Dataset()
        group.PixelMeasuresSequence = [measures]
        group.PlaneOrientationSequence = [orientation]
        ds.SharedFunctionalGroupsSequence = [group]
        per_frame = []
        for k in range(n):
            position, item = Dataset(), Dataset()
            position.ImagePositionPatient = [_ds(v) for v in geometry.positions[k]]
            item.PlanePositionSequence = [position]
            per_frame.append(item)
        ds.PerFrameFunctionalGroupsSequence = per_frame
        ds.FrameOfReferenceUID = single.FrameOfReferenceUID
        ds.PositionReferenceIndicator = single.PositionReferenceIndicator
    else:
        _place(ds, geometry, 0, source, shared)
    ds.SourceImageSequence = _references(vol, vol.slices)
    return _finish(ds, stack, shared)


def _finish(ds: Dataset, pixels: np.ndarray, shared: dict) -> bytes:
    rows, cols = pixels.shape[-2:]
    ds.Rows, ds.Columns = rows, cols
    ds.SOPInstanceUID = derived_uid()
    ds.PixelData = shared["coding"].encode(pixels)
    ds["PixelData"].VR = "OW"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    ds.file_meta = meta
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()
