import math

import numpy as np
import pytest
import scipy.ndimage as ndi

from medcompute.kernels import bandpass, butterworth_mask, gaussian_sigma_for_cutoff

# --- builders -----------------------------------------------------------------


@pytest.mark.parametrize("wavelength", [2.0, 7.5, 16.0, 100.0])
def test_gaussian_sigma_gives_gain_one_half_at_the_cutoff(wavelength):
    sigma = gaussian_sigma_for_cutoff(wavelength)
    assert sigma == pytest.approx(math.sqrt(math.log(2) / 2) * wavelength / math.pi)
    # Continuous Gaussian transfer function exp(-2 pi^2 sigma^2 f^2) at f = 1 / wavelength.
    assert math.exp(-2 * math.pi**2 * sigma**2 / wavelength**2) == pytest.approx(0.5)


def test_gaussian_sigma_sampled_kernel_gain():
    # The kernel scipy actually samples (truncated at 4 sigma) keeps the gain within 1e-4.
    wavelength = 16.0
    sigma = gaussian_sigma_for_cutoff(wavelength)
    delta = np.zeros(257)
    delta[128] = 1.0
    kernel = ndi.gaussian_filter1d(delta, sigma, mode="constant")
    x = np.arange(257) - 128
    gain = float(np.sum(kernel * np.cos(2 * np.pi * x / wavelength)))
    assert gain == pytest.approx(0.5, abs=1e-4)


def test_gaussian_sigma_per_axis():
    assert gaussian_sigma_for_cutoff([10.0, 20.0]) == pytest.approx(
        (gaussian_sigma_for_cutoff(10.0), gaussian_sigma_for_cutoff(20.0))
    )


def test_butterworth_mask_golden_and_gain_at_cutoff():
    low = butterworth_mask((8,), 4.0, None, 2)
    high = butterworth_mask((8,), None, 4.0, 2)
    # rfft frequencies 0, 1/8, 2/8, 3/8, 4/8 cycles per voxel; cutoff at 1/4.
    np.testing.assert_allclose(low, [1.0, 1 / (1 + 0.5**4), 0.5, 1 / (1 + 1.5**4), 1 / 17])
    np.testing.assert_allclose(high, 1.0 - low)
    assert low.shape == (5,) and low.dtype == np.float64


def test_butterworth_mask_layouts_and_range():
    full = butterworth_mask((6, 10), 3.0, 12.0, 3, real=False)
    half = butterworth_mask((6, 10), 3.0, 12.0, 3, dtype=np.float32)
    assert full.shape == (6, 10)
    assert half.shape == (6, 6) and half.dtype == np.float32
    np.testing.assert_allclose(half, full[:, :6], rtol=1e-6)
    assert full[0, 0] == 0.0  # the high-pass removes the mean
    assert np.all((full >= 0) & (full <= 1))


def test_butterworth_mask_in_mm_equals_voxels():
    spacing = (0.5, 2.0)
    in_mm = butterworth_mask((16, 12), 4.0, 20.0, 2, spacing)
    in_voxels = butterworth_mask((16, 12), (8.0, 2.0), (40.0, 10.0), 2)
    np.testing.assert_allclose(in_mm, in_voxels, rtol=1e-12)


def test_butterworth_mask_higher_order_is_steeper_and_never_overflows():
    f = np.fft.rfftfreq(64)
    gentle = butterworth_mask((64,), 8.0, None, 1, dtype=np.float32)
    steep = butterworth_mask((64,), 8.0, None, 60, dtype=np.float32)
    assert np.all(np.isfinite(steep))
    passband, stopband = f < 0.1, f > 0.15
    assert np.all(steep[passband] >= gentle[passband])
    assert np.all(steep[stopband] <= gentle[stopband])
    assert steep[8] == pytest.approx(0.5)


# --- gain 1/2 at the cutoff, measured on a sinusoid ---------------------------


def _amplitude(signal, wavelength):
    """Amplitude of the cos/sin component of ``wavelength`` over whole periods."""
    x = np.arange(signal.shape[-1])
    c = np.cos(2 * np.pi * x / wavelength)
    s = np.sin(2 * np.pi * x / wavelength)
    return np.hypot(2 * np.mean(signal * c, axis=-1), 2 * np.mean(signal * s, axis=-1))


def _sinusoid(wavelength, length=512, rows=3, offset=500.0, amplitude=200.0):
    x = np.arange(length)
    wave = offset + amplitude * np.cos(2 * np.pi * x / wavelength + 0.3)
    return np.tile(wave, (rows, 1))


@pytest.mark.parametrize("method", ["dog", "butterworth"])
@pytest.mark.parametrize("which", ["low", "high"])
@pytest.mark.parametrize("mode", ["nearest", "wrap"])
def test_gain_is_one_half_at_the_cutoff(xp, host, method, which, mode):
    wavelength = 16.0
    image = _sinusoid(wavelength).astype(np.float32)
    cutoffs = {"low_cutoff": wavelength} if which == "low" else {"high_cutoff": wavelength}
    out = host(bandpass(xp.asarray(image), method=method, mode=mode, **cutoffs))
    interior = out[:, 128:384]  # 16 whole periods, far from the border
    gain = _amplitude(interior, wavelength) / 200.0
    np.testing.assert_allclose(gain, 0.5, atol=2e-3)


@pytest.mark.parametrize("method", ["dog", "butterworth"])
def test_cutoff_in_mm(xp, host, method):
    # 8 mm at 0.5 mm per voxel is the 16-voxel wavelength of the sinusoid.
    image = _sinusoid(16.0).astype(np.uint16)
    out = host(bandpass(xp.asarray(image), 8.0, method=method, spacing=(1.0, 0.5), units="mm"))
    gain = _amplitude(out[:, 128:384], 16.0) / 200.0
    np.testing.assert_allclose(gain, 0.5, atol=2e-3)


@pytest.mark.parametrize("method", ["dog", "butterworth"])
def test_band_passes_the_middle_and_stops_both_ends(xp, host, method):
    x = np.arange(512)
    fine, middle, coarse = 3.0, 32.0, 512.0
    image = (
        1000.0
        + 100 * np.cos(2 * np.pi * x / fine)
        + 100 * np.cos(2 * np.pi * x / middle)
        + 100 * np.cos(2 * np.pi * x / coarse)
    )
    image = np.tile(image, (2, 1)).astype(np.float64)
    out = host(bandpass(xp.asarray(image), 6.0, 128.0, method=method, mode="wrap",
                        dtype=np.float64))
    assert _amplitude(out, middle)[0] / 100 == pytest.approx(1.0, abs=0.05)
    assert _amplitude(out, fine)[0] / 100 < 0.1
    assert _amplitude(out, coarse)[0] / 100 < 0.1
    assert abs(out.mean()) < 1.0  # the mean (1000) is gone


# --- against references ------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(24, 20), (8, 12, 10)])
def test_dog_is_a_difference_of_gaussian_filters(xp, make_image, assert_close, dtype, shape):
    image = make_image(shape, dtype)
    image32 = image.astype(np.float32)
    s_low, s_high = gaussian_sigma_for_cutoff(3.0), gaussian_sigma_for_cutoff(9.0)
    expected = (ndi.gaussian_filter(image32, s_low, mode="reflect", truncate=3.0)
                - ndi.gaussian_filter(image32, s_high, mode="reflect", truncate=3.0))
    out = bandpass(xp.asarray(image), 3.0, 9.0, mode="reflect", truncate=3.0)
    assert_close(out, expected, dtype=np.float32)
    high_only = bandpass(xp.asarray(image), high_cutoff=9.0, mode="reflect", truncate=3.0)
    assert_close(high_only, image32 - ndi.gaussian_filter(image32, s_high, mode="reflect",
                                                          truncate=3.0))


def test_dog_with_a_vanishing_low_cutoff_keeps_the_detail(xp, make_image, assert_close):
    # sigma ~ 2e-301: as scipy's gaussian_filter, no smoothing (not 1 / sigma**2 = 1 / 0).
    image = make_image((8, 12), np.float32)
    s_high = gaussian_sigma_for_cutoff(3.0)
    out = bandpass(xp.asarray(image), 1e-300, 3.0)
    assert_close(out, image - ndi.gaussian_filter(image, s_high, mode="nearest"))


@pytest.mark.parametrize("shape", [(24, 20), (8, 12, 10)])
def test_butterworth_wrap_is_fft_times_mask(xp, make_image, assert_close, shape):
    image = make_image(shape, np.int16).astype(np.float64)
    mask = butterworth_mask(shape, 3.0, 9.0, 2)
    axes = tuple(range(len(shape)))
    expected = np.fft.irfftn(np.fft.rfftn(image) * mask, s=shape, axes=axes)
    out = bandpass(xp.asarray(image), 3.0, 9.0, method="butterworth", mode="wrap",
                   dtype=np.float64)
    assert_close(out, expected, rtol=1e-9, dtype=np.float64)


@pytest.mark.parametrize(("mode", "pad_mode"), [("reflect", "symmetric"), ("mirror", "reflect"),
                                                ("nearest", "edge"), ("constant", "constant")])
def test_butterworth_pads_as_mode_says(xp, make_image, assert_close, mode, pad_mode):
    image = make_image((20, 30), np.uint8).astype(np.float64)
    # Larger cutoff 9.0 -> 9 voxels each side (at most half of each axis).
    padded = np.pad(image, 9, mode=pad_mode)
    mask = butterworth_mask(padded.shape, 3.0, 9.0, 2)
    spectrum = np.fft.rfftn(padded) * mask
    expected = np.fft.irfftn(spectrum, s=padded.shape, axes=(0, 1))[9:-9, 9:-9]
    out = bandpass(xp.asarray(image), 3.0, 9.0, method="butterworth", mode=mode, cval=0.0,
                   dtype=np.float64)
    assert_close(out, expected, rtol=1e-9)


def test_butterworth_float32_output(xp, make_image, host):
    image = make_image((16, 16), np.uint16)
    out = host(bandpass(xp.asarray(image), 4.0, method="butterworth"))
    assert out.dtype == np.float32 and out.shape == (16, 16) and out.flags.c_contiguous


def test_constant_image_low_pass_is_unchanged_high_pass_is_zero(xp, assert_close):
    image = np.full((12, 14), 77, np.uint8)
    for method in ("dog", "butterworth"):
        assert_close(bandpass(xp.asarray(image), 4.0, method=method), image.astype(float),
                     rtol=1e-5)
        assert_close(bandpass(xp.asarray(image), None, 4.0, method=method),
                     np.zeros(image.shape), rtol=1e-5)


# --- errors -------------------------------------------------------------------

IMAGE = np.zeros((6, 7), np.int16)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bandpass(IMAGE), "low_cutoff: at least one of low_cutoff and high_cutoff"),
        (lambda: bandpass(IMAGE, 5.0, 5.0), "low_cutoff: must be < high_cutoff, got 5.0 >= 5.0"),
        (lambda: bandpass(IMAGE, (2.0, 9.0), (4.0, 8.0)),
         "low_cutoff: must be < high_cutoff, got 9.0 >= 8.0 on axis 1"),
        (lambda: bandpass(IMAGE, -1.0), "low_cutoff: must be finite and > 0, got -1.0"),
        (lambda: bandpass(IMAGE, 0.0), "low_cutoff: must be finite and > 0, got 0.0"),
        (lambda: bandpass(IMAGE, None, float("inf")), "high_cutoff: must be finite and > 0"),
        (lambda: bandpass(IMAGE, (1.0, 2.0, 3.0)), "low_cutoff: must be a number or a sequence"),
        (lambda: bandpass(IMAGE, 2.0, method="fft"), "method: must be 'dog' or 'butterworth'"),
        (lambda: bandpass(IMAGE, 2.0, order=0), "order: must be an integer >= 1, got 0"),
        (lambda: bandpass(IMAGE, 2.0, order=2.5), "order: must be an integer"),
        (lambda: bandpass(IMAGE, 2.0, units="mm"),
         "low_cutoff: given in mm but the image has no voxel spacing"),
        (lambda: bandpass(IMAGE, None, 2.0, units="mm"),
         "high_cutoff: given in mm but the image has no voxel spacing"),
        (lambda: bandpass(IMAGE, 2.0, mode="symmetric"), "mode: must be one of"),
        (lambda: bandpass(IMAGE, 2.0, truncate=-1.0), "truncate: must be finite and > 0"),
        (lambda: bandpass(IMAGE, 2.0, dtype=np.uint8), "dtype: must be float32 or float64"),
        (lambda: gaussian_sigma_for_cutoff(0.0), "wavelength: must be finite and > 0"),
        (lambda: gaussian_sigma_for_cutoff([1.0, -2.0]), "wavelength: must be finite and > 0"),
        (lambda: butterworth_mask((8,), None, None, 2), "low_cutoff: at least one"),
        (lambda: butterworth_mask((8,), 4.0, 2.0, 2), "low_cutoff: must be < high_cutoff"),
        (lambda: butterworth_mask((0, 4), 4.0, None, 2), "shape: must be a non-empty sequence"),
        (lambda: butterworth_mask((8,), 4.0, None, 0), "order: must be an integer >= 1"),
        (lambda: butterworth_mask((8,), 4.0, None, 2, 0.0), "sample_spacing: must be finite"),
    ],
)
def test_errors_name_the_parameter(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(message)
