"""What the image store's catalog records of DICOM files: ids, dates, device, conditions.

Read from the headers `dicom.volume.load` parsed (pixels are never touched). The result is
a plain dict with the fields of the API's ``ImageMetadata`` message. Values are
copied, never logged: patient ids and UIDs stay in the catalog.
"""

from __future__ import annotations

import datetime
import re

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence

__all__ = ["describe", "CONDITIONS", "OTHER_CONDITIONS", "normalise_date", "check_uid",
           "first_number"]

#: Numeric imaging conditions: DICOM keyword(s) (the first present wins) -> field.
CONDITIONS: dict[str, tuple[str, ...]] = {
    "repetition_time_ms": ("RepetitionTime",),
    "echo_time_ms": ("EchoTime", "EffectiveEchoTime"),
    "inversion_time_ms": ("InversionTime",),
    "flip_angle_deg": ("FlipAngle",),
    "field_strength_t": ("MagneticFieldStrength",),
    "kvp": ("KVP",),
    "tube_current_ma": ("XRayTubeCurrent", "XRayTubeCurrentInmA"),
    "exposure_mas": ("Exposure", "ExposureInmAs"),
    "exposure_time_ms": ("ExposureTime",),
    "pitch": ("SpiralPitchFactor",),
    "slice_thickness_mm": ("SliceThickness",),
}
#: Further acquisition attributes kept as text where present.
OTHER_CONDITIONS = (
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "SequenceName",
    "EchoTrainLength", "ImagingFrequency", "ImagedNucleus", "PixelBandwidth",
    "ReceiveCoilName", "TransmitCoilName", "ConvolutionKernel", "FilterType",
    "DataCollectionDiameter", "ReconstructionDiameter", "CTDIvol", "ContrastBolusAgent",
    "BodyPartExamined", "Radiopharmaceutical", "RadionuclideTotalDose", "Units",
    "DecayCorrection",
)
_MAX_TEXT = 256
_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


def normalise_date(text: str) -> str:
    """``YYYYMMDD`` from ``YYYYMMDD`` or ``YYYY-MM-DD``; ValueError otherwise."""
    m = _DATE.match(text.strip())
    if not m:
        raise ValueError(f"expected a date as YYYYMMDD or YYYY-MM-DD, got {text!r}")
    year, month, day = (int(g) for g in m.groups())
    try:
        datetime.date(year, month, day)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a date of the calendar ({exc}); expected "
                         "YYYYMMDD or YYYY-MM-DD") from None
    return "".join(m.groups())


#: A DICOM UID (PS3.5 9.1): components of digits separated by dots, no leading zero
#: in a component of more than one digit, at most 64 characters.
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def check_uid(text: str) -> str:
    """``text`` when it is a valid DICOM UID; ValueError saying what is wrong otherwise."""
    if not text or len(text) > 64:
        raise ValueError(f"a UID has 1 to 64 characters, got {len(text)}")
    if not _UID.match(text):
        raise ValueError(f"{text!r} is not a DICOM UID: expected digits in components "
                         "separated by single dots, no leading zeros (e.g. 1.2.840.10008.1.1)")
    return text


def _holders(ds: Dataset) -> list[Dataset]:
    """The data set, then the first item of each sequence in it and in its functional groups."""
    out = [ds]
    groups = []
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = ds.get(keyword)
        if seq:
            groups.append(seq[0])
    for holder in [ds, *groups]:
        for element in _sequences(holder):
            if element.value and element.keyword not in (
                    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
                item = element.value[0]
                out.append(item)
                for inner in _sequences(item):  # e.g. Radiopharmaceutical Information > ...
                    if inner.value and len(out) < 200:
                        out.append(inner.value[0])
    return out


def _sequences(holder: Dataset):
    """The holder's sequence elements, found without converting the others' values (a
    header's hundreds of elements, its pixel data among them)."""
    for tag in list(holder.keys()):
        raw = holder.get_item(tag, keep_deferred=True)
        vr = raw.VR
        if vr in (None, "UN") and not tag.is_private:   # implicit VR, or UN: the dictionary's
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                vr = None
        if vr in (None, "UN"):                          # private or unknown: as pydicom reads it
            vr = holder[tag].VR
        if vr == "SQ":
            yield holder[tag]


def _value(holders: list[Dataset], keyword: str):
    for holder in holders:
        try:
            value = holder.get(keyword)
        except Exception:  # noqa: BLE001 - a value pydicom cannot convert: skip it
            continue
        if value is not None and value != "" and not isinstance(value, DicomSequence):
            return value
    return None


def first_number(value) -> float | None:
    """The first value of a (multi-valued) attribute as a finite float; None otherwise."""
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0] if len(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _text(value) -> str:
    if isinstance(value, (list, tuple, MultiValue)):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()[:_MAX_TEXT]


def _date(ds: Dataset) -> str:
    for keyword in ("AcquisitionDate", "SeriesDate", "StudyDate", "ContentDate"):
        value = _text(ds.get(keyword) or "")
        if len(value) >= 8 and value[:8].isdigit():
            return value[:8]
    value = _text(ds.get("AcquisitionDateTime") or "")
    return value[:8] if len(value) >= 8 and value[:8].isdigit() else ""


def describe(datasets: list[Dataset], order: tuple[int, ...]) -> dict:
    """The catalog's metadata of one image made of ``datasets`` (files) in slice ``order``.

    Numeric conditions that differ between files are averaged; text is the first file's.
    """
    ordered = [datasets[i] for i in (order or range(len(datasets)))]
    first = ordered[0]
    holders = [_holders(ds) for ds in ordered]
    conditions: dict = {}
    for name, keywords in CONDITIONS.items():
        values = []
        for h in holders:
            number = next((n for k in keywords if (n := first_number(_value(h, k))) is not None),
                          None)
            if number is not None:
                values.append(number)
        if values:
            same = all(v == values[0] for v in values)
            conditions[name] = values[0] if same else sum(values) / len(values)
    other = {}
    for keyword in OTHER_CONDITIONS:
        value = _value(holders[0], keyword)
        if value is not None and (text := _text(value)):
            other[keyword] = text
    if other:
        conditions["other"] = other
    sops = [_text(ds.get("SOPInstanceUID") or "") for ds in ordered]
    meta = {
        "modality": _text(first.get("Modality") or ""),
        "patient_id": _text(first.get("PatientID") or ""),
        "study_instance_uid": _text(first.get("StudyInstanceUID") or ""),
        "series_instance_uid": _text(first.get("SeriesInstanceUID") or ""),
        "sop_instance_uids": sops if all(sops) else [],
        "acquisition_date": _date(first),
        "manufacturer": _text(first.get("Manufacturer") or ""),
        "device_model": _text(first.get("ManufacturerModelName") or ""),
        "description": _text(first.get("SeriesDescription") or ""),
        "conditions": conditions,
    }
    holders0 = holders[0]
    center = first_number(_value(holders0, "WindowCenter"))
    width = first_number(_value(holders0, "WindowWidth"))
    if center is not None and width is not None and width > 0:
        meta["window_center"], meta["window_width"] = center, width
    return meta
