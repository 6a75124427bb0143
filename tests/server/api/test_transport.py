"""Image descriptors: what the server accepts before any pixel arrives."""

import pytest

from medcompute.proto.v1 import image_pb2 as img
from medcompute.server.api.transport import expect_image
from medcompute.server.errors import InvalidArgument, ResourceExhausted

F = "header.input.inline"


def _raw(**kw):
    kw.setdefault("encoding", img.ENCODING_RAW)
    kw.setdefault("dtype", img.DATA_TYPE_INT16)
    return img.ImageDescriptor(**kw)


def test_a_good_raw_descriptor():
    e = expect_image(_raw(shape=[2, 3], spacing_mm=[1.0, 0.5], crc32=7), F, max_bytes=1 << 20)
    assert (e.size, e.shape, e.spacing, e.crc32) == (12, (2, 3), (1.0, 0.5), 7)


def test_over_the_size_limit_is_resource_exhausted():
    with pytest.raises(ResourceExhausted, match="at most 100") as info:
        expect_image(_raw(shape=[100, 100]), F, max_bytes=100)
    assert info.value.field == f"{F}.shape"
    with pytest.raises(ResourceExhausted):
        expect_image(img.ImageDescriptor(encoding=img.ENCODING_DICOM, file_sizes=[60, 60]), F,
                     max_bytes=100)


@pytest.mark.parametrize("desc, field, words", [
    (_raw(shape=[2, 3], spacing_mm=[1.0]), "spacing_mm", "2 values"),
    (_raw(shape=[2, 3], spacing_mm=[1.0, -1.0]), "spacing_mm", "> 0"),
    (_raw(shape=[2, 3], spacing_mm=[1.0, float("nan")]), "spacing_mm", "finite"),
    (_raw(shape=[2, 3], file_sizes=[3]), "file_sizes", "only DICOM"),
    (_raw(shape=[2, 3], compression=9), "compression", "ZSTD"),
    (img.ImageDescriptor(encoding=img.ENCODING_DICOM), "file_sizes", "byte length"),
    (img.ImageDescriptor(encoding=img.ENCODING_DICOM, file_sizes=[5, 0]), "file_sizes", "> 0"),
    (img.ImageDescriptor(encoding=img.ENCODING_DICOM, file_sizes=[5], size=6), "size",
     "add up to 5"),
    (img.ImageDescriptor(shape=[2]), "encoding",
     "ENCODING_RAW, ENCODING_DICOM; got ENCODING_UNSPECIFIED"),
])
def test_refusals_name_the_field(desc, field, words):
    with pytest.raises(InvalidArgument, match=words) as info:
        expect_image(desc, F, max_bytes=1 << 20)
    assert info.value.field == f"{F}.{field}"
