"""Film sheets from an image: the format information checked once, slices or a MIP laid
out in the display format's image boxes, and the 8- or 12-bit grayscale of a slice."""

import numpy as np
import pytest

from medcompute.server.dicomnet.films import PrintOptions, check_options, pages, to_print
from medcompute.server.errors import InvalidArgument


def test_a_slice_is_mapped_linearly_from_its_minimum_to_its_maximum():
    image = np.array([[10, 20], [30, 40]], np.int16)
    np.testing.assert_array_equal(to_print(image, 8), [[0, 85], [170, 255]])
    np.testing.assert_array_equal(to_print(image, 12), [[0, 1365], [2730, 4095]])
    assert to_print(image, 12).dtype == np.uint16 and to_print(image, 8).dtype == np.uint8
    np.testing.assert_array_equal(to_print(np.full((2, 2), 7.0), 8), np.zeros((2, 2)))


def test_slices_fill_the_sheets_in_order_and_a_mip_is_one_box():
    volume = np.arange(5 * 2 * 2, dtype=np.float32).reshape(5, 2, 2)
    o = check_options(PrintOptions(display_format="standard\\1,2", slices=(4, 0, 2)),
                      volume.shape)
    assert o.display_format == "STANDARD\\1,2" and o.boxes == 2
    sheets = pages(volume, o)
    assert [len(s) for s in sheets] == [2, 1]
    np.testing.assert_array_equal(sheets[0][0], to_print(volume[4], 8))
    np.testing.assert_array_equal(sheets[1][0], to_print(volume[2], 8))
    assert len(pages(volume, check_options(PrintOptions(), volume.shape))[0]) == 1
    [[mip]] = pages(volume, check_options(PrintOptions(mip=True), volume.shape))
    np.testing.assert_array_equal(mip, to_print(volume.max(axis=0), 8))
    [[flat]] = pages(volume[0], check_options(PrintOptions(), (2, 2)))
    np.testing.assert_array_equal(flat, to_print(volume[0], 8))


@pytest.mark.parametrize(("options", "shape", "field", "message"), [
    (dict(display_format="STANDARD\\0,1"), (4, 4), "display_format", "STANDARD\\C,R"),
    (dict(film_size="A0"), (4, 4), "film_size", "8INX10IN"),
    (dict(orientation="up"), (4, 4), "orientation", "portrait or landscape"),
    (dict(copies=0), (4, 4), "copies", "1 to 99"),
    (dict(bits=16), (4, 4), "bits", "8 or 12"),
    (dict(), (4,), "image_id", "2 or 3 axes"),
    (dict(mip=True), (4, 4), "mip", "3-D image"),
    (dict(slices=(1,)), (4, 4), "slices", "2-D"),
    (dict(slices=(0, 9)), (3, 4, 4), "slices[1]", "0 to 2"),
    (dict(copies=99), (150, 2, 2), "slices", "more than 100 sheets"),
])
def test_format_information_is_checked_naming_the_field(options, shape, field, message):
    with pytest.raises(InvalidArgument) as caught:
        check_options(PrintOptions(**options), shape)
    assert caught.value.field == field and message in caught.value.message
