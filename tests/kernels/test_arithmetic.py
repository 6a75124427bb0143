import numpy as np
import pytest

from medcompute.kernels import Backend, add, register_backend, subtract

DTYPES = [np.uint8, np.int16, np.uint16, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 7), (4, 5, 6)])
def test_subtract_and_add_same_shape(xp, make_image, assert_close, dtype, shape):
    a = make_image(shape, dtype, seed=1)
    b = make_image(shape, np.int16, seed=2)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    assert_close(subtract(xp.asarray(a), xp.asarray(b)), a64 - b64, dtype=np.float32)
    assert_close(subtract(xp.asarray(a), xp.asarray(b), weight=0.25), a64 - 0.25 * b64)
    assert_close(add(xp.asarray(a), xp.asarray(b)), a64 + b64, dtype=np.float32)
    assert_close(add(xp.asarray(a), xp.asarray(b), weight=-2.0), a64 - 2.0 * b64)


def test_unsigned_inputs_do_not_wrap(xp, assert_close):
    a = np.array([1, 200], np.uint8)
    b = np.array([3, 100], np.uint8)
    assert_close(subtract(xp.asarray(a), xp.asarray(b)), np.array([-2.0, 100.0]))
    assert_close(add(xp.asarray(a), xp.asarray(b)), np.array([4.0, 300.0]))


def test_frame_shaped_mask_is_subtracted_from_every_frame(xp, make_image, assert_close):
    run = make_image((5, 4, 3), np.uint16, seed=3)
    mask = make_image((4, 3), np.uint16, seed=4)
    expected = run.astype(np.float64) - 0.9 * mask.astype(np.float64)[None]
    assert_close(subtract(xp.asarray(run), xp.asarray(mask), weight=0.9), expected)
    assert_close(add(xp.asarray(run), xp.asarray(mask)),
                 run.astype(np.float64) + mask.astype(np.float64)[None])


@pytest.mark.parametrize("frame", [0, 2, -1])
def test_mask_frame_uses_a_frame_of_the_image(xp, make_image, assert_close, frame):
    run = make_image((4, 3, 5), np.int16, seed=5)
    expected = run.astype(np.float64) - run[frame].astype(np.float64)[None]
    out = subtract(xp.asarray(run), mask_frame=frame, dtype=np.float64)
    assert_close(out, expected, dtype=np.float64)
    assert not np.any(np.asarray(expected[frame]))


def test_logarithmic_subtraction_with_floor(xp, assert_close):
    run = np.array([[100, 50, 0], [100, 100, 100]], np.uint16)
    out = subtract(xp.asarray(run), mask_frame=1, logarithmic=True, dtype=np.float64)
    expected = np.array([[0.0, np.log(0.5), np.log(1e-6) - np.log(100.0)], [0.0, 0.0, 0.0]])
    assert_close(out, expected, rtol=1e-12)
    floored = subtract(xp.asarray(run), xp.asarray(run[1]), logarithmic=True, log_floor=1.0,
                       weight=2.0, dtype=np.float64)
    expected = np.log(np.maximum(run, 1.0)) - 2.0 * np.log(100.0)
    assert_close(floored, expected, rtol=1e-12)


def test_logarithmic_cancels_multiplicative_attenuation(xp, make_image, assert_close):
    background = make_image((8, 9), np.uint16, seed=6).astype(np.float64) + 1500.0
    attenuation = np.exp(-np.linspace(0.0, 1.0, 9))[None, :]
    run = np.stack([background, background * attenuation])
    out = subtract(xp.asarray(run), mask_frame=0, logarithmic=True, dtype=np.float64)
    assert_close(out[1], np.broadcast_to(np.log(attenuation), (8, 9)), rtol=1e-12)


IMAGE = np.zeros((3, 4, 5), np.int16)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: subtract(IMAGE), "other: required unless mask_frame is given"),
        (lambda: subtract(IMAGE, IMAGE, mask_frame=0), "mask_frame: must be None when other"),
        (lambda: subtract(IMAGE, np.zeros((4, 4), np.int16)),
         "other: shape (4, 4) must equal the image's shape (3, 4, 5) or its frame shape (4, 5)"),
        (lambda: add(IMAGE, np.zeros((3, 4), np.int16)), "other: shape (3, 4) must equal"),
        (lambda: add(np.zeros(4, np.uint8), np.zeros(3, np.uint8)),
         "other: shape (3,) must equal the image's shape (4,)"),
        (lambda: add(IMAGE, None), "other: required, got None"),
        (lambda: add(IMAGE, IMAGE.astype(np.int64)), "other: dtype must be one of"),
        (lambda: add(IMAGE, IMAGE.tolist()), "other: must be an array, got list"),
        (lambda: subtract(IMAGE, mask_frame=3), "mask_frame: must be in [-3, 2] for 3 frames"),
        (lambda: subtract(IMAGE, mask_frame=-4), "mask_frame: must be in [-3, 2]"),
        (lambda: subtract(IMAGE, mask_frame=1.0), "mask_frame: must be an integer"),
        (lambda: subtract(np.zeros(4, np.uint8), mask_frame=0),
         "mask_frame: needs an image of at least 2 dimensions"),
        (lambda: subtract(IMAGE, IMAGE, weight=float("inf")), "weight: must be a finite number"),
        (lambda: add(IMAGE, IMAGE, weight="2"), "weight: must be a real number"),
        (lambda: subtract(IMAGE, IMAGE, logarithmic=1), "logarithmic: must be True or False"),
        (lambda: subtract(IMAGE, IMAGE, logarithmic=True, log_floor=0.0),
         "log_floor: must be finite and > 0"),
        (lambda: subtract(IMAGE, IMAGE, dtype=np.int16), "dtype: must be float32 or float64"),
        (lambda: add(IMAGE.astype(np.float16), IMAGE), "image: dtype must be one of"),
    ],
)
def test_errors_name_the_parameter(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(message)


class _ElsewhereArray(np.ndarray):
    """An array type that a registered backend claims (stands in for a device array)."""


def test_other_on_another_backend_is_refused():
    import scipy.fft
    import scipy.ndimage

    elsewhere = Backend("elsewhere", np, scipy.ndimage, scipy.fft, "elsewhere")
    register_backend(_ElsewhereArray, lambda array: elsewhere)
    with pytest.raises(ValueError) as info:
        subtract(IMAGE, IMAGE.view(_ElsewhereArray))
    assert str(info.value).startswith(
        "other: must be on the image's backend (numpy, cpu), got elsewhere (elsewhere)"
    )
