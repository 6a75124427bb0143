"""The worker's refusal to make a version of a file whose pixels are neither grayscale nor
RGB (worker/version_tasks.py): pydicom's CT test file relabelled as retired CMYK (4 samples
per pixel), refused before its pixel data is decoded, and nothing written."""

from __future__ import annotations

import pydicom
from pydicom.data import get_testdata_file

from medcompute.server.dicom.volume import quiet_pydicom
from medcompute.server.worker.version_tasks import make_version


def test_a_version_of_four_samples_per_pixel_is_refused(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 4, "CMYK", 0
    path = tmp_path / "cmyk.dcm"
    with quiet_pydicom():
        ds.save_as(path, enforce_file_format=True)
    for ratio in (None, 10.0):                      # the lossless and a lossy version
        # The worker answers the refusal as its result; the server raises it (versions.py).
        answer = make_version(str(path), [path.stat().st_size], str(tmp_path / "version"),
                              name="review", ratio=ratio)
        assert answer["field"] == "version"
        assert answer["refused"] == ("versions are made of 1 or 3 samples per pixel; this "
                                      "image has 4")
    assert not (tmp_path / "version").exists()
