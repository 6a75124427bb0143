import numpy as np
import pytest

from medcompute.kernels import project, projected_spacing, slab_count

DTYPES = [np.uint8, np.int16, np.uint16, np.float32, np.float64]
REDUCERS = {"max": np.max, "min": np.min, "mean": np.mean, "sum": np.sum}


@pytest.mark.parametrize("kind", list(REDUCERS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "axis"), [((9, 11), 0), ((9, 11), -1), ((5, 6, 7), 0),
                                             ((5, 6, 7), 1), ((5, 6, 7), 2)])
def test_whole_axis_matches_numpy(xp, make_image, assert_close, kind, dtype, shape, axis):
    image = make_image(shape, dtype)
    out = project(xp.asarray(image), kind, axis=axis)
    expected = REDUCERS[kind](image.astype(np.float64), axis=axis)
    assert_close(out, expected, dtype=np.float32)


def _slabs_reference(image, kind, axis, thickness, step):
    image = np.moveaxis(image.astype(np.float64), axis, 0)
    starts = range(0, image.shape[0] - thickness + 1, step)
    out = np.stack([REDUCERS[kind](image[s:s + thickness], axis=0) for s in starts])
    return np.moveaxis(out, 0, axis)


@pytest.mark.parametrize("kind", list(REDUCERS))
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
@pytest.mark.parametrize(("thickness", "step"), [(1, None), (3, None), (3, 1), (4, 3), (10, 2)])
def test_slabs_match_numpy(xp, make_image, assert_close, kind, dtype, thickness, step):
    image = make_image((10, 4, 6), dtype, seed=3)
    for axis in (0, 2):
        if thickness > image.shape[axis]:
            continue
        out = project(xp.asarray(image), kind, axis=axis, thickness=thickness, step=step)
        expected = _slabs_reference(image, kind, axis, thickness, step or thickness)
        assert_close(out, expected, dtype=np.float32)


def test_slab_golden(xp, assert_close):
    image = np.arange(7, dtype=np.uint8)[:, None] * np.array([1, 2], np.uint8)
    out = project(xp.asarray(image), "max", thickness=3, step=2)
    assert_close(out, np.array([[2, 4], [4, 8], [6, 12]]))
    mean = project(xp.asarray(image), "mean", axis=0, thickness=2)
    assert_close(mean, np.array([[0.5, 1.0], [2.5, 5.0], [4.5, 9.0]]))


def test_thickness_and_step_in_mm(xp, make_image, assert_close):
    image = make_image((20, 3, 4), np.uint16, seed=4)
    spacing = (1.25, 0.5, 0.5)
    # 5 mm / 1.25 mm = 4 voxels; 2.6 mm / 1.25 mm = 2.08 -> 2 voxels.
    out = project(xp.asarray(image), "max", thickness=5.0, step=2.6, spacing=spacing, units="mm")
    assert_close(out, _slabs_reference(image, "max", 0, 4, 2))
    # A thin slab still holds one voxel.
    thin = project(xp.asarray(image), "sum", thickness=0.3, spacing=spacing, units="mm")
    assert_close(thin, image.astype(np.float64))


def test_float64_compute(xp, assert_close):
    image = np.array([[2**31 - 1, 1], [2**31 - 1, 2]], np.int32)
    out = project(xp.asarray(image), "sum", dtype=np.float64)
    assert_close(out, np.array([2.0 * (2**31 - 1), 3.0]), rtol=1e-15, dtype=np.float64)


@pytest.mark.parametrize("kind", list(REDUCERS))
def test_projection_of_a_1d_image_is_a_0d_array(xp, assert_close, kind):
    out = project(xp.asarray(np.array([3, 9, 1], np.int8)), kind)
    expected = {"max": 9.0, "min": 1.0, "mean": 13 / 3, "sum": 13.0}[kind]
    assert_close(out, np.array(expected), dtype=np.float32)


def test_slab_count():
    assert slab_count(10, 4, 3) == 3
    assert slab_count(10, 10, 1) == 1
    assert slab_count(10, 1, 1) == 10
    assert slab_count(3, 4, 1) == 0


def test_projected_spacing():
    spacing = (2.0, 0.5, 0.7)
    assert projected_spacing(spacing, 0) == (0.5, 0.7)
    assert projected_spacing(spacing, -1) == (2.0, 0.5)
    assert projected_spacing(spacing, 0, thickness=5) == (10.0, 0.5, 0.7)
    assert projected_spacing(spacing, 1, thickness=5, step=2) == (2.0, 1.0, 0.7)
    assert projected_spacing(None, 0, thickness=3) is None


IMAGE = np.zeros((6, 4), np.uint8)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: project(IMAGE, "median"), "kind: must be one of 'max', 'min', 'mean', 'sum'"),
        (lambda: project(IMAGE, axis=2), "axis: must be in [-2, 1] for a 2-d image, got 2"),
        (lambda: project(IMAGE, axis=1.0), "axis: must be an integer"),
        (lambda: project(IMAGE, thickness=0), "thickness: must be a whole number of voxels >= 1"),
        (lambda: project(IMAGE, thickness=1.5), "thickness: must be a whole number of voxels"),
        (lambda: project(IMAGE, thickness=7),
         "thickness: must be at most the length of axis 0 (6 voxels), got 7 voxels"),
        (lambda: project(IMAGE, thickness=2, step=0), "step: must be a whole number of voxels"),
        (lambda: project(IMAGE, step=2), "step: only meaningful with a slab thickness"),
        (lambda: project(IMAGE, thickness=2.0, units="mm"),
         "thickness: given in mm but the image has no voxel spacing"),
        (lambda: project(IMAGE, thickness=-2.0, units="mm", spacing=(1, 1)),
         "thickness: must be finite and > 0"),
        (lambda: project(IMAGE, thickness=2.0, step=float("nan"), units="mm", spacing=(1, 1)),
         "step: must be finite and > 0"),
        (lambda: project(IMAGE, units="inch"), "units: must be 'voxel' or 'mm'"),
        (lambda: project(IMAGE, spacing=(1.0, 2.0, 3.0)), "spacing: must be a number or"),
        (lambda: project(IMAGE, dtype=np.int32), "dtype: must be float32 or float64"),
        (lambda: project(IMAGE.astype(np.complex64)), "image: dtype must be one of"),
        (lambda: projected_spacing((1.0, 2.0), 2), "axis: must be in [-2, 1]"),
        (lambda: projected_spacing((1.0, -2.0), 0), "spacing: must be finite and > 0"),
        (lambda: projected_spacing((1.0, 2.0), 0, thickness=0), "thickness: must be a whole"),
        (lambda: projected_spacing((1.0, 2.0), 0, step=2), "step: only meaningful"),
    ],
)
def test_errors_name_the_parameter(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(message)
