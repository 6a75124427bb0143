"""The one check of DICOM instances before anything is kept or computed from them.

Every door runs it on the `Volume` that ``dicom.volume.load`` parsed: the store, before an
instance is stored, whether it came by gRPC ``Register`` or by DICOM C-STORE
(``identity=True``); ``dicom.read.read_info``, before a Process call with DICOM input is
admitted; ``dicom.write``, before a derived series is written from stored files. What it
refuses, with `InvalidArgument` naming the part and the attribute (its message starts
with the attribute, so a DICOM ErrorComment of 64 characters still names it):

- identity (stored instances only): StudyInstanceUID, SeriesInstanceUID and
  SOPInstanceUID present and valid UIDs (PS3.5 9.1) in every file;
- geometry, wherever it is given (the data set and each functional group item):
  PixelSpacing and ImagerPixelSpacing two positive finite numbers, SliceThickness a
  finite number not below 0, ImageOrientationPatient two (nearly) unit, (nearly)
  orthogonal direction cosines, ImagePositionPatient three finite numbers.

The pixel data itself (Rows x Columns x frames x bits against the Pixel Data's length,
or the fragments of encapsulated data) is checked by ``load`` as it parses each file.
Messages never quote element values: no names, ids, dates or UIDs.
"""

from __future__ import annotations

import math

import numpy as np
from pydicom.dataset import Dataset

from medcompute.server.dicom.meta import check_uid
from medcompute.server.dicom.volume import Volume, header_floats, header_value, tag_name
from medcompute.server.errors import InvalidArgument

__all__ = ["check_instances", "IDENTITY", "ORIENTATION_TOLERANCE"]

#: The UIDs every stored instance has (Type 1 in every IOD).
IDENTITY = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
#: How far the direction cosines of ImageOrientationPatient may be from unit length,
#: and their dot product from 0.
ORIENTATION_TOLERANCE = 0.05
_GROUPS = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")
_GEOMETRY_ITEMS = ("PixelMeasuresSequence", "PlaneOrientationSequence",
                   "PlanePositionSequence")


def check_instances(vol: Volume, field: str, *, identity: bool) -> None:
    """Refuse the first file of ``vol`` whose identity (with ``identity``) or geometry no
    door may accept; the part is named ``field[i]``."""
    for i, ds in enumerate(vol.datasets):
        where = f"{field}[{i}]"
        if identity:
            _check_identity(ds, where)
        for holder in _geometry_holders(ds, where):
            _check_geometry(holder, where)


def _check_identity(ds: Dataset, where: str) -> None:
    for keyword in IDENTITY:
        value = header_value(ds, keyword, where)
        text = "" if value is None else str(value).strip()
        if not text:
            raise InvalidArgument(f"{tag_name(keyword)} is missing or empty; an instance is "
                                  "kept only with its Study, Series and SOP Instance UIDs", where)
        try:
            check_uid(text)
        except ValueError:
            raise InvalidArgument(f"{tag_name(keyword)} is not a valid UID: expected 1 to 64 "
                                  "characters, digits in components separated by single dots, "
                                  "no leading zeros (PS3.5 9.1)", where) from None


def _geometry_holders(ds: Dataset, where: str) -> list[Dataset]:
    """The data set, and the geometry items of its shared and per-frame functional groups."""
    out = [ds]
    for keyword in _GROUPS:
        for group in header_value(ds, keyword, where) or ():
            for inner in _GEOMETRY_ITEMS:
                out.extend(header_value(group, inner, where) or ())
    return out


def _check_geometry(holder: Dataset, where: str) -> None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = header_floats(holder, keyword, where, 2)
        if spacing is not None and not all(v > 0 for v in spacing):
            raise InvalidArgument(f"{tag_name(keyword)} must be two positive numbers (mm "
                                  "between rows, between columns); a value is 0 or negative",
                                  where)
    thickness = header_floats(holder, "SliceThickness", where, 1)
    if thickness is not None and thickness[0] < 0:
        raise InvalidArgument(f"{tag_name('SliceThickness')} is negative; it must be a "
                              "thickness in mm (or empty when unknown)", where)
    orientation = header_floats(holder, "ImageOrientationPatient", where, 6)
    if orientation is not None:
        _check_orientation(np.array(orientation), where)
    header_floats(holder, "ImagePositionPatient", where, 3)     # three finite numbers


def _check_orientation(cosines: np.ndarray, where: str) -> None:
    row, column = cosines[:3], cosines[3:]
    tolerance = ORIENTATION_TOLERANCE
    lengths = (float(np.linalg.norm(row)), float(np.linalg.norm(column)))
    if not all(math.isclose(n, 1.0, abs_tol=tolerance) for n in lengths):
        raise InvalidArgument(f"{tag_name('ImageOrientationPatient')} must hold two unit "
                              "direction cosines (row, column); their lengths are "
                              f"{lengths[0]:.3g} and {lengths[1]:.3g}", where)
    if abs(float(row @ column)) > tolerance:
        raise InvalidArgument(f"{tag_name('ImageOrientationPatient')} must hold two "
                              "orthogonal direction cosines (row, column); they are not", where)
