"""Every kind of derived object passes dciodvfy with no error its input did not have: a
file and a series per input modality in pydicom's test files the service reads (CT, MR,
NM and other secondary captures, segmentations, RT dose), integer and float results, one
file per slice and one multi-frame file, a projection."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from medcompute.server.dicom.read import decode
from medcompute.server.dicom.write import write_derived
from tests import dciodvfy
from tests.store_helpers import ct_series, data_of

# (file, modality or IOD), each one pydicom bundles and the service reads
INPUTS = [
    "CT_small.dcm",  # CT
    "693_J2KI.dcm",  # CT, JPEG 2000 lossy
    "MR_small.dcm",  # MR
    "MR_small_RLE.dcm",  # MR, RLE
    "examples_overlay.dcm",  # MR, unsigned, with an overlay
    "JPEG2000.dcm",  # NM as secondary capture
    "JPEGLSNearLossless_16.dcm",  # secondary capture, JPEG-LS near-lossless
    "image_dfl.dcm",  # OT secondary capture, 8 bits, deflated
    "liver_1frame.dcm",  # segmentation
    "rtdose.dcm",  # RT dose, multi-frame float values
]


def _results(volume: np.ndarray) -> dict[str, np.ndarray]:
    return {"same": volume, "float": volume.astype(np.float32) * 1.5 + 0.25,
            "wide": volume.astype(np.int32) * 3 - 70000}


def _assert_clean(outputs: list[bytes], inputs: list[bytes]) -> None:
    had: set[str] = set()
    for data in inputs:
        had |= dciodvfy.check(data).errors
    for k, out in enumerate(outputs):
        report = dciodvfy.check(out)
        assert report.errors - had == set(), f"file {k} ({report.iod}):\n{report.text}"


@pytest.mark.parametrize("name", INPUTS)
@pytest.mark.parametrize("single_file", [False, True], ids=["per-slice", "single-file"])
def test_a_derived_file_adds_no_validator_error(name, single_file):
    parts = [data_of(name)]
    volume, _ = decode(parts)
    for kind, result in _results(volume).items():
        outputs = write_derived(parts, result, spacing=None, description=f"op {kind}",
                                single_file=single_file)
        _assert_clean(outputs, parts)


@pytest.mark.parametrize("single_file", [False, True], ids=["per-slice", "single-file"])
def test_a_derived_ct_series_adds_no_validator_error(single_file):
    parts = ct_series(4)
    volume, _ = decode(parts)
    for result in _results(volume).values():
        _assert_clean(write_derived(parts, result, spacing=None, description="gaussian",
                                    single_file=single_file), parts)
    projection = volume.max(axis=0)  # a 2-D result of a series keeps its plane
    _assert_clean(write_derived(parts, projection, spacing=None, description="mip",
                                single_file=False), parts)
    thinner = volume[::2]  # fewer slices, with a spacing of their own
    _assert_clean(write_derived(parts, thinner, spacing=(2.0, 0.5, 0.5), description="slab",
                                single_file=False), parts)


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _as(name: str, sop_class: str, modality: str) -> bytes:
    """A bundled file relabelled as another IOD (pydicom bundles no grayscale PET or CR)."""
    ds = _read(data_of(name))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.Modality = modality
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize(("sop_class", "modality"), [
    (pydicom.uid.PositronEmissionTomographyImageStorage, "PT"),
    (pydicom.uid.ComputedRadiographyImageStorage, "CR"),
    (pydicom.uid.DigitalXRayImageStorageForPresentation, "DX"),
    (pydicom.uid.NuclearMedicineImageStorage, "NM"),
    (pydicom.uid.UltrasoundImageStorage, "US"),
], ids=["PT", "CR", "DX", "NM", "US"])
def test_other_modalities_add_no_validator_error(sop_class, modality):
    parts = [_as("CT_small.dcm", sop_class, modality)]
    volume, _ = decode(parts)
    for result in _results(volume).values():
        _assert_clean(write_derived(parts, result, spacing=None, description="x",
                                    single_file=False), parts)


def test_a_derived_pet_has_no_rescale_intercept_and_gives_its_values_back():
    parts = [_as("CT_small.dcm", pydicom.uid.PositronEmissionTomographyImageStorage, "PT")]
    volume, _ = decode(parts)
    for result in (volume.astype(np.float32) * 1.5 + 0.25, volume.astype(np.float32) + 5000):
        out = write_derived(parts, result, spacing=None, description="x", single_file=False)[0]
        ds = _read(out)
        assert ds.SOPClassUID == pydicom.uid.PositronEmissionTomographyImageStorage
        assert list(ds.ImageType) == ["DERIVED", "PRIMARY"]
        assert float(ds.RescaleIntercept) == 0
        back, _ = decode([out])
        assert np.abs(back - result).max() <= np.abs(result).max() / 32767


def test_a_derived_ct_keeps_its_iod_with_a_third_image_type_value():
    parts = [data_of("CT_small.dcm")]
    volume, _ = decode(parts)
    ds = _read(write_derived(parts, volume.astype(np.float32), spacing=None, description="x",
                             single_file=False)[0])
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]


def test_a_ct_without_a_third_image_type_value_is_derived_as_axial():
    source = _read(data_of("CT_small.dcm"))
    source.ImageType = ["ORIGINAL", "PRIMARY"]
    buf = io.BytesIO()
    source.save_as(buf, enforce_file_format=True)
    parts = [buf.getvalue()]
    volume, _ = decode(parts)
    ds = _read(write_derived(parts, volume, spacing=None, description="x",
                             single_file=False)[0])
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]


def test_a_derived_mr_keeps_the_type_2_attributes_its_input_had():
    parts = [data_of("MR_small.dcm")]
    source = _read(parts[0])
    volume, _ = decode(parts)
    ds = _read(write_derived(parts, volume, spacing=None, description="x",
                             single_file=False)[0])
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage
    for keyword in ("EchoTrainLength", "Laterality"):  # empty in the input: empty here too
        assert keyword in source and keyword in ds
        assert not ds[keyword].value
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", str(source.ImageType[2])]


def test_an_exact_integer_mr_result_is_stored_as_it_is():
    parts = [data_of("MR_small.dcm")]
    volume, _ = decode(parts)
    ds = _read(write_derived(parts, volume, spacing=None, description="x",
                             single_file=False)[0])
    assert "RescaleSlope" not in ds and "RealWorldValueMappingSequence" not in ds
    np.testing.assert_array_equal(ds.pixel_array, volume)


def test_a_float_mr_result_maps_its_values_by_a_real_world_value_mapping():
    parts = [data_of("MR_small.dcm")]
    volume, _ = decode(parts)
    result = volume.astype(np.float32) * 1.5 + 0.25
    out = write_derived(parts, result, spacing=None, description="x", single_file=False)[0]
    ds = _read(out)
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage
    assert "RescaleSlope" not in ds and "RescaleIntercept" not in ds  # no Modality LUT in MR
    (mapping,) = ds.RealWorldValueMappingSequence
    stored = ds.pixel_array.astype(np.float64)
    values = stored * mapping.RealWorldValueSlope + mapping.RealWorldValueIntercept
    step = (result.max() - result.min()) / 65535
    assert np.abs(values - result).max() <= step
    assert mapping.RealWorldValueFirstValueMapped <= stored.min()
    assert stored.max() <= mapping.RealWorldValueLastValueMapped
    # the window is in stored values, as a viewer applies it without a Modality LUT
    assert stored.min() - 1 <= float(ds.WindowCenter) <= stored.max() + 1
    back, _ = decode([out])  # the service reads the values back through the mapping
    assert np.abs(back - result).max() <= step


def test_a_source_without_a_body_part_gets_an_unknown_laterality():
    parts = [data_of("rtdose.dcm")]
    volume, _ = decode(parts)
    ds = _read(write_derived(parts, volume, spacing=None, description="x",
                             single_file=False)[0])
    assert "Laterality" in ds and not ds.Laterality
    parts = [data_of("JPEG2000.dcm")]  # WHOLE BODY: unpaired, so no laterality at all
    volume, _ = decode(parts)
    ds = _read(write_derived(parts, volume, spacing=None, description="x",
                             single_file=False)[0])
    assert "Laterality" not in ds
