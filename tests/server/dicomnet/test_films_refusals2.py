"""Format information refused by films.check_options, each with its field and whole
message: the display format, orientation and bit depth as given, slices and a MIP of an
image that has no such axis or slice, and more sheets than one request may print."""

import pytest

from medcompute.server.dicomnet.films import PrintOptions, check_options
from medcompute.server.errors import InvalidArgument

CT = (40, 512, 512)        # a CT series of 40 slices
XRAY = (2048, 2048)        # one radiograph


@pytest.mark.parametrize(("options", "shape", "field", "message"), [
    (dict(display_format="STANDARD\\3"), CT, "display_format",
     r"expected STANDARD\C,R (columns, rows from 1 to 99), got 'STANDARD\\3'"),
    (dict(display_format="ROW\\2,2"), CT, "display_format",
     r"expected STANDARD\C,R (columns, rows from 1 to 99), got 'ROW\\2,2'"),
    (dict(orientation="upright"), CT, "orientation",
     "expected portrait or landscape, got 'upright'"),
    (dict(bits=16), CT, "bits", "expected 8 or 12, got 16"),
    (dict(slices=(3, 7), mip=True), CT, "mip", "give slices or mip, not both"),
    (dict(mip=True), XRAY, "mip", "a MIP needs a 3-D image"),
    (dict(slices=(0,)), XRAY, "slices", "slices are of a 3-D image; this one is 2-D"),
    (dict(slices=(0, 39, 40)), CT, "slices[2]",
     "slice 40 does not exist; the image has 40 (0 to 39)"),
    (dict(slices=(-1,)), CT, "slices[0]",
     "slice -1 does not exist; the image has 40 (0 to 39)"),
    (dict(copies=3), CT, "slices", "40 sheet(s) x 3 copies is more than 100 sheets"),
    (dict(display_format="STANDARD\\2,2", copies=11), CT, "slices",
     "10 sheet(s) x 11 copies is more than 100 sheets"),
])
def test_format_information_is_refused_with_the_whole_message(options, shape, field,
                                                               message):
    with pytest.raises(InvalidArgument) as caught:
        check_options(PrintOptions(**options), shape)
    assert caught.value.field == field
    assert caught.value.message == message


def test_as_many_sheets_as_allowed_are_accepted():
    o = check_options(PrintOptions(display_format="standard\\2,2", copies=10), CT)
    assert (o.display_format, o.boxes, o.copies) == ("STANDARD\\2,2", 4, 10)
