"""A derived series written in parts (several workers, a share of the slices each) is the
series written at once: the same series, instance numbers, geometry and pixels."""

from __future__ import annotations

import io
import time

import numpy as np
import pydicom
import pytest

from medcompute.server.dicom.read import decode
from medcompute.server.dicom.write import Series, derived_uid, write_derived
from tests.store_helpers import ct_series


def _written(parts, volume, shares):
    series = derived_uid(), time.time()
    files = []
    for lo, hi in shares:
        files += write_derived(parts, volume, spacing=None, description="gaussian",
                               single_file=False, series=Series(*series, (lo, hi)))
    return [pydicom.dcmread(io.BytesIO(f)) for f in files], series


@pytest.mark.parametrize("strip", [False, True], ids=["source-frame", "no-source-frame"])
def test_a_series_written_in_parts_is_the_series_written_at_once(strip):
    parts = ct_series(7)
    if strip:  # a source without a frame of reference: each part must make the same one
        out = []
        for p in parts:
            ds = pydicom.dcmread(io.BytesIO(p))
            del ds.FrameOfReferenceUID
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            out.append(buf.getvalue())
        parts = out
    volume, _ = decode(parts)
    result = volume.astype(np.float32) * 1.5
    whole = [pydicom.dcmread(io.BytesIO(f)) for f in write_derived(
        parts, result, spacing=None, description="gaussian", single_file=False)]
    pieces, (uid, _) = _written(parts, result, [(0, 3), (3, 5), (5, 7)])
    assert len(pieces) == len(whole) == 7
    assert {ds.SeriesInstanceUID for ds in pieces} == {uid}
    assert len({ds.SOPInstanceUID for ds in pieces}) == 7
    assert len({ds.FrameOfReferenceUID for ds in pieces}) == 1
    assert len({(ds.SeriesDate, ds.SeriesTime) for ds in pieces}) == 1
    for a, b in zip(pieces, whole):
        assert a.InstanceNumber == b.InstanceNumber
        assert a.ImagePositionPatient == b.ImagePositionPatient
        assert a.PixelData == b.PixelData
        assert (a.RescaleSlope, a.RescaleIntercept) == (b.RescaleSlope, b.RescaleIntercept)
    np.testing.assert_array_equal(decode([_bytes(p) for p in pieces])[0],
                                  decode([_bytes(w) for w in whole])[0])


def _bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_a_multiframe_result_is_not_written_in_parts():
    parts = ct_series(3)
    volume, _ = decode(parts)
    with pytest.raises(ValueError, match="not written in parts"):
        write_derived(parts, volume, spacing=None, description="x", single_file=True,
                      series=Series(derived_uid(), time.time(), (0, 2)))


def _with_window(parts, center, width):
    out = []
    for p in parts:
        ds = pydicom.dcmread(io.BytesIO(p))
        ds.WindowCenter, ds.WindowWidth = center, width
        out.append(_bytes(ds))
    return out


def test_a_filtered_series_keeps_the_source_window():
    parts = _with_window(ct_series(4), 40, 400)             # a soft-tissue window in HU
    volume, _ = decode(parts)
    result = volume.astype(np.float32) * 0.9 + 3.5          # still in HU, as a filter is
    written = [pydicom.dcmread(io.BytesIO(f)) for f in write_derived(
        parts, result, spacing=None, description="gaussian", single_file=False)]
    assert {(float(ds.WindowCenter), float(ds.WindowWidth)) for ds in written} == {(40, 400)}
    # A multi-value window: its first value.
    parts = _with_window(ct_series(2), [40, 300], [400, 1500])
    (ds, _) = [pydicom.dcmread(io.BytesIO(f)) for f in write_derived(
        parts, decode(parts)[0], spacing=None, description="x", single_file=False)]
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40, 400)


def test_a_result_in_other_units_is_windowed_on_its_values_not_washed_out():
    parts = _with_window(ct_series(4), 40, 400)
    volume, _ = decode(parts)
    rng = np.random.default_rng(0)
    result = rng.uniform(1000.0, 2000.0, volume.shape).astype(np.float32)
    result[0, 0, :3] = 1e7                                   # a few extreme values
    (ds, *_) = [pydicom.dcmread(io.BytesIO(f)) for f in write_derived(
        parts, result, spacing=None, description="x", single_file=False)]
    lo = float(ds.WindowCenter) - float(ds.WindowWidth) / 2
    hi = float(ds.WindowCenter) + float(ds.WindowWidth) / 2
    # The window spans the values but for the extremes: not the source's, not 0..1e7.
    assert 1000 <= lo <= 1010 and 1990 <= hi <= 2000
    # A mask (one value nearly everywhere): its whole range.
    mask = np.zeros(volume.shape, bool)
    mask[:, 10:12, 10:12] = True
    (ds, *_) = [pydicom.dcmread(io.BytesIO(f)) for f in write_derived(
        parts, mask, spacing=None, description="x", single_file=False)]
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (0.5, 1)
