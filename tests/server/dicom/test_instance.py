"""Tests of medcompute.server.dicom.instance: the one validator of DICOM instances (UIDs
and geometry), as every door runs it on a parsed volume.

Every file is pydicom's CT_small.dcm, or made from it.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medcompute.server.dicom.instance import check_instances
from medcompute.server.dicom.read import read_info
from medcompute.server.dicom.volume import load, quiet_pydicom
from medcompute.server.dicom.write import write_derived
from medcompute.server.errors import InvalidArgument

NAME, PID = "SENTINEL^PATIENT", "SENTINELID"


def _ct(**changes) -> Dataset:
    """CT_small with ``changes`` (None: the attribute removed), invalid values allowed."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID = NAME, PID
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
        ds.save_as(out)
    return out.getvalue()


def _check(part: bytes, *, identity: bool) -> None:
    """As the doors run it: on the parsed volume, pydicom's value validation off."""
    with quiet_pydicom():
        check_instances(load([part], max_voxels=1 << 30, field="input.dicom"),
                        "input.dicom", identity=identity)


def _refused(part: bytes, attribute: str, *, identity: bool = True) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        _check(part, identity=identity)
    error = caught.value
    assert error.field == "input.dicom[0]"
    assert error.message.startswith(attribute), error.message   # first in an ErrorComment
    assert NAME not in error.details and PID not in error.details
    return error


def test_a_complete_instance_passes_both_checks():
    part = _encode(_ct())
    _check(part, identity=True)
    _check(part, identity=False)


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_an_instance_without_one_of_its_uids_is_refused_for_keeping(keyword):
    part = _encode(_ct(**{keyword: None}))
    error = _refused(part, keyword)
    assert "missing" in error.message
    _check(part, identity=False)            # processing needs no UIDs


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
@pytest.mark.parametrize("uid", ["1.2.03.4", "1..2", "1.2.x", "1." + "2" * 70])
def test_an_invalid_uid_is_refused_without_quoting_it(keyword, uid):
    error = _refused(_encode(_ct(**{keyword: uid})), keyword)
    assert "not a valid UID" in error.message and uid not in error.details


@pytest.mark.parametrize("spacing", [[-1, 0], [0, 0.5], [0.5, -0.5]])
@pytest.mark.parametrize("keyword", ["PixelSpacing", "ImagerPixelSpacing"])
def test_a_spacing_that_is_not_positive_is_refused(keyword, spacing):
    part = _encode(_ct(**{keyword: spacing}))
    _refused(part, keyword)
    _refused(part, keyword, identity=False)


def test_a_negative_slice_thickness_is_refused():
    _refused(_encode(_ct(SliceThickness=-2)), "SliceThickness")
    _check(_encode(_ct(SliceThickness=0)), identity=True)      # 0: unknown, as today


@pytest.mark.parametrize("orientation", [
    [0, 0, 0, 0, 0, 0],             # no direction at all
    [1, 0, 0, 1, 0, 0],             # parallel
    [2, 0, 0, 0, 1, 0],             # not unit
    [1, 0, 0, 0.5, 0.5, 0],         # neither unit nor orthogonal
    [1, 0, 0, 0.6, 0.8, 0],         # unit, not orthogonal
])
def test_an_orientation_that_is_not_two_unit_orthogonal_cosines_is_refused(orientation):
    part = _encode(_ct(ImageOrientationPatient=orientation))
    _refused(part, "ImageOrientationPatient")
    _refused(part, "ImageOrientationPatient", identity=False)


def test_a_tilted_orientation_written_to_six_places_passes():
    angle = np.deg2rad(20.0)
    cosines = [1, 0, 0, 0, np.cos(angle), np.sin(angle)]
    _check(_encode(_ct(ImageOrientationPatient=[f"{v:.6f}" for v in cosines])),
           identity=True)


def test_a_position_that_is_not_three_finite_numbers_is_refused():
    _refused(_encode(_ct(ImagePositionPatient=[0, 0])), "ImagePositionPatient")


def test_the_geometry_of_functional_groups_is_checked_too():
    ds = _ct()
    measures, orientation = Dataset(), Dataset()
    measures.PixelSpacing = [0.5, 0]
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    group = Dataset()
    group.PixelMeasuresSequence = Sequence([measures])
    group.PlaneOrientationSequence = Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([group])
    _refused(_encode(ds), "PixelSpacing")


def test_read_info_refuses_geometry_processing_could_not_use():
    """Process with DICOM input: refused before a job exists (no ZeroDivisionError)."""
    with pytest.raises(InvalidArgument) as caught:
        read_info([_encode(_ct(PixelSpacing=[-1, 0]))])
    assert caught.value.message.startswith("PixelSpacing")
    read_info([_encode(_ct(SeriesInstanceUID=None))])        # no UIDs needed to compute


def test_write_derived_refuses_a_source_whose_orientation_is_not_one():
    part = _encode(_ct(ImageOrientationPatient=[0] * 6))
    with pytest.raises(InvalidArgument) as caught:
        write_derived([part], np.zeros((128, 128), np.float32), spacing=None,
                      description="test", single_file=False)
    assert caught.value.message.startswith("ImageOrientationPatient")
