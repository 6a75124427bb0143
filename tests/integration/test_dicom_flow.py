"""DICOM in, DICOM derived series out, through the real server."""

import io

import numpy as np
import pydicom
import pytest
import scipy.ndimage as ndi
from pydicom.data import get_testdata_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CT = get_testdata_file("CT_small.dcm")


def _hu(ds) -> np.ndarray:
    return pydicom.pixels.apply_rescale(ds.pixel_array, ds).astype(np.float32)


def test_ct_file_to_a_derived_dicom_file(client, tmp_path):
    source = pydicom.dcmread(CT)
    result = client.process(CT, ["gaussian:sigma_mm=1.5"], output="dicom_file")
    assert len(result.files) == 1
    out = tmp_path / "out.dcm"
    out.write_bytes(result.files[0])
    ds = pydicom.dcmread(out)
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert ds.SOPInstanceUID != source.SOPInstanceUID
    assert ds.PatientID == source.PatientID
    assert "gaussian" in ds.DerivationDescription and "sigma" in ds.DerivationDescription
    spacing = [float(v) for v in source.PixelSpacing]
    expected = ndi.gaussian_filter(_hu(source), [1.5 / s for s in spacing], mode="nearest")
    span = float(expected.max() - expected.min())
    np.testing.assert_allclose(_hu(ds), expected, atol=span / 30000 + 1e-3)
    params = {p["name"]: p for p in result.applied[0]["parameters"]}
    assert params["sigma"]["values"] == pytest.approx([1.5 / s for s in spacing])


def test_rescale_is_applied_to_raw_output(client):
    source = pydicom.dcmread(CT)
    result = client.process(CT, ["mean:size=1"])
    np.testing.assert_allclose(result.array, _hu(source))


def _series(folder, n=5):
    folder.mkdir()
    base = pydicom.dcmread(CT)
    normal = np.cross([float(v) for v in base.ImageOrientationPatient[:3]],
                      [float(v) for v in base.ImageOrientationPatient[3:]])
    origin = np.array([float(v) for v in base.ImagePositionPatient])
    order = [3, 0, 4, 1, 2][:n]
    for k, i in enumerate(order):
        ds = pydicom.dcmread(CT)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.4f}" for v in origin + 2.5 * i * normal]
        ds.PixelData = (ds.pixel_array + np.int16(10 * i)).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(folder / f"slice{k}.dcm")
    return folder


def test_a_folder_series_is_one_volume_and_comes_back_as_a_series(client, tmp_path):
    folder = _series(tmp_path / "series")
    result = client.process(folder, ["mip:axis=0"])
    assert result.array.ndim == 2
    back = client.process(folder, ["gaussian:sigma=1"], output="dicom_series")
    assert len(back.files) == 5
    datasets = [pydicom.dcmread(io.BytesIO(b)) for b in back.files]
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 5
    volume = client.process(folder, ["mean:size=1"])
    assert volume.array.shape[0] == 5
    assert volume.spacing[0] == pytest.approx(2.5, rel=1e-3)
    # Sorted along the normal: slice k holds the base image + 10*k.
    diffs = np.diff(volume.array.mean(axis=(1, 2)))
    np.testing.assert_allclose(diffs, 10.0, atol=1e-3)


@pytest.mark.parametrize(("changes", "ops", "output", "attribute"), [
    ({"PixelSpacing": [-1, 0]}, ["gaussian:sigma_mm=1"], "array", "PixelSpacing"),
    ({"PixelSpacing": [-1, 0]}, ["gaussian:sigma=1"], "dicom_file", "PixelSpacing"),
    ({"ImageOrientationPatient": [0] * 6}, ["gaussian:sigma=1"], "dicom_file",
     "ImageOrientationPatient"),
])
def test_geometry_processing_cannot_use_is_refused_naming_the_attribute(client, tmp_path,
                                                                        changes, ops, output,
                                                                        attribute):
    """Refused as the caller's mistake before a job runs: never INTERNAL (ZeroDivisionError
    in the operations, a failing DICOM writer)."""
    from medcompute.client import ServiceError
    from medcompute.server.dicom.volume import quiet_pydicom

    ds = pydicom.dcmread(CT)
    path = tmp_path / "bad.dcm"
    with quiet_pydicom():
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    with pytest.raises(ServiceError) as caught:
        client.process(str(path), ops, output=output)
    assert caught.value.code.name == "INVALID_ARGUMENT", caught.value
    assert "header.input.inline.dicom[0]" in str(caught.value), caught.value
    assert attribute in str(caught.value)
