"""Tests of medcompute.server.dicom.volume: the parsed volume read.py and write.py share."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom import config as pydicom_config
from pydicom.data import get_testdata_file

from medcompute.server.dicom.read import read_info
from medcompute.server.dicom.volume import DicomInfo, Volume, load, quiet_pydicom
from medcompute.server.errors import InvalidArgument


def _ct_series(n: int = 3) -> list[bytes]:
    """`n` single-frame CT files, given in reverse slice order."""
    parts = []
    for k in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.ImagePositionPatient = [0.0, 0.0, float(10 - k)]
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        out = io.BytesIO()
        ds.save_as(out)
        parts.append(out.getvalue())
    return parts


def test_load_orders_the_slices_and_keeps_the_datasets():
    parts = _ct_series()
    with quiet_pydicom():
        vol = load(parts, max_voxels=2**31, field="input.dicom")
    assert isinstance(vol, Volume) and isinstance(vol.info, DicomInfo)
    assert vol.info.order == (2, 1, 0)
    assert vol.slices == [(2, 0), (1, 0), (0, 0)]
    assert len(vol.datasets) == 3 and vol.positions.shape == (3, 3)
    assert vol.info == read_info(parts)


def test_load_names_the_field_of_a_refused_part():
    with pytest.raises(InvalidArgument) as caught:
        load([b"not dicom"], max_voxels=2**31, field="header.image")
    assert caught.value.field == "header.image[0]"


def test_quiet_pydicom_nests_and_restores_the_validation_modes():
    settings = pydicom_config.settings
    before = (settings.reading_validation_mode, settings.writing_validation_mode)
    with quiet_pydicom():
        with quiet_pydicom():
            assert settings.reading_validation_mode == pydicom_config.IGNORE
        assert settings.writing_validation_mode == pydicom_config.IGNORE
    assert (settings.reading_validation_mode, settings.writing_validation_mode) == before


def _mr_with_mapping(slope: float, intercept: float, *, rescale: bool) -> bytes:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    item = pydicom.Dataset()
    item.RealWorldValueFirstValueMapped, item.RealWorldValueLastValueMapped = -32768, 32767
    item.RealWorldValueSlope, item.RealWorldValueIntercept = slope, intercept
    item.LUTExplanation, item.LUTLabel = "test", "TEST"
    ds.RealWorldValueMappingSequence = [item]
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = 2, -5
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_an_image_without_a_modality_lut_is_read_through_its_real_world_value_mapping():
    import numpy as np

    from medcompute.server.dicom.read import decode

    stored = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array.astype(float)
    mapped, _ = decode([_mr_with_mapping(0.5, 3.0, rescale=False)])
    np.testing.assert_allclose(mapped, stored * 0.5 + 3.0, rtol=1e-6)
    # a Modality LUT (Rescale Slope/Intercept), where there is one, decides
    rescaled, _ = decode([_mr_with_mapping(0.5, 3.0, rescale=True)])
    np.testing.assert_allclose(rescaled, stored * 2 - 5, rtol=1e-6)


def test_a_real_world_value_mapping_that_is_not_a_number_is_refused_naming_it():
    from medcompute.server.dicom.read import decode

    with pytest.raises(InvalidArgument, match=r"RealWorldValueSlope \(0040,9225\) must hold "
                                              r"1 finite numbers") as e:
        decode([_mr_with_mapping(float("nan"), 0.0, rescale=False)])
    assert e.value.field.startswith("input.dicom")
