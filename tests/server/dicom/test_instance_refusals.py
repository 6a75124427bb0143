"""Every refusal of dicom/instance.py, with its whole message: the identity and geometry
checks of an instance, on CT_small with one attribute changed in memory."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.data import get_testdata_file

from medcompute.server.dicom.instance import check_instances
from medcompute.server.dicom.volume import load, quiet_pydicom
from medcompute.server.errors import InvalidArgument

FIELD = "input.dicom"


def _ct(**changes) -> bytes:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    out = io.BytesIO()
    with quiet_pydicom():
        for keyword, value in changes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(out)
    return out.getvalue()


@pytest.mark.parametrize("part, words", [
    (_ct(SeriesInstanceUID=None),
     "SeriesInstanceUID (0020,000E) is missing or empty; an instance is kept only with its "
     "Study, Series and SOP Instance UIDs"),
    (_ct(StudyInstanceUID=""),
     "StudyInstanceUID (0020,000D) is missing or empty; an instance is kept only with its "
     "Study, Series and SOP Instance UIDs"),
    (_ct(SOPInstanceUID="1.2.03.4"),
     "SOPInstanceUID (0008,0018) is not a valid UID: expected 1 to 64 characters, digits in "
     "components separated by single dots, no leading zeros (PS3.5 9.1)"),
    (_ct(PixelSpacing=[0.5, 0]),
     "PixelSpacing (0028,0030) must be two positive numbers (mm between rows, between "
     "columns); a value is 0 or negative"),
    (_ct(ImagerPixelSpacing=[-1, 0.5]),
     "ImagerPixelSpacing (0018,1164) must be two positive numbers (mm between rows, between "
     "columns); a value is 0 or negative"),
    (_ct(SliceThickness=-2),
     "SliceThickness (0018,0050) is negative; it must be a thickness in mm (or empty when "
     "unknown)"),
    (_ct(ImageOrientationPatient=[2, 0, 0, 0, 1, 0]),
     "ImageOrientationPatient (0020,0037) must hold two unit direction cosines (row, column); "
     "their lengths are 2 and 1"),
    (_ct(ImageOrientationPatient=[1, 0, 0, 0.6, 0.8, 0]),
     "ImageOrientationPatient (0020,0037) must hold two orthogonal direction cosines (row, "
     "column); they are not"),
])
def test_an_instance_no_door_may_keep_is_refused(part, words):
    with pytest.raises(InvalidArgument) as caught, quiet_pydicom():
        check_instances(load([part], max_voxels=1 << 30, field=FIELD), FIELD, identity=True)
    assert caught.value.field == f"{FIELD}[0]"
    assert caught.value.message == words
