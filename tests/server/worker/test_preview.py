"""Previews (worker/preview.py): projection, window choice, scaling, PNG bytes."""

import cv2
import numpy as np
import pytest

from medcompute.server.worker.preview import CT_WINDOW, choose_window, flatten, render


def test_a_volume_is_its_maximum_intensity_projection():
    vol = np.zeros((3, 4, 5), np.int16)
    vol[2, 1, 3] = 9
    flat, what = flatten(vol)
    assert flat.shape == (4, 5) and flat[1, 3] == 9
    assert what == "maximum intensity projection over axis 0"
    assert flatten(np.zeros((2, 3, 4, 5)))[1] == "maximum intensity projection over axes 0, 1"
    assert flatten(np.arange(4))[0].shape == (1, 4)


def test_the_window_chosen_in_order_of_precedence():
    img = np.arange(1000, dtype=np.float32).reshape(10, 100)
    assert choose_window(img, center=10, width=20).source == "requested"
    assert choose_window(img, center=10, width=0, image_window=(1, 2)).source == "image"
    ct = choose_window(img, modality="ct")
    assert (ct.center, ct.width, ct.source) == (*CT_WINDOW, "CT soft tissue")
    # A derived image (not the original) ignores its modality's and its own window.
    pct = choose_window(img, modality="CT", original=False, image_window=(1, 2))
    lo, hi = np.percentile(img, [0.5, 99.5])
    assert pct.source == "percentile"
    assert pct.center == pytest.approx((lo + hi) / 2) and pct.width == pytest.approx(hi - lo)


def test_a_flat_or_empty_image_still_has_a_positive_window():
    assert choose_window(np.full((4, 4), 7.0)).width == 1.0
    assert choose_window(np.full((4, 4), np.nan)).width == 1.0


def test_the_png_holds_the_windowed_grey_values():
    img = np.array([[0, 50, 100], [150, 200, 250]], np.float32)
    preview = render(img, center=100, width=200)
    grey = cv2.imdecode(np.frombuffer(preview.png, np.uint8), cv2.IMREAD_UNCHANGED)
    expected = np.clip((img - 0) * 255 / 200, 0, 255).astype(np.uint8)
    assert np.array_equal(grey, expected)
    assert (preview.width, preview.height) == (3, 2)
    assert preview.rendering == "the image, window centre 100 width 200 (requested), 3 x 2 pixels"


def test_large_images_shrink_and_keep_their_physical_aspect():
    preview = render(np.zeros((512, 1024), np.uint8), max_size=256)
    assert (preview.width, preview.height) == (256, 128)
    # Rows twice as far apart as columns: shown twice as tall.
    preview = render(np.zeros((100, 200), np.uint8), max_size=256, spacing=(2.0, 1.0))
    assert (preview.width, preview.height) == (200, 200)


@pytest.mark.parametrize("size", [15, 1025])
def test_a_size_outside_the_range_is_refused(size):
    with pytest.raises(ValueError, match="max_size must be 16..1024"):
        render(np.zeros((4, 4)), max_size=size)
