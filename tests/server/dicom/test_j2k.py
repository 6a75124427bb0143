"""The JPEG 2000 codestreams of stored versions: lossless round trip, the layout parsed
from their headers, and prefixes decoded at lower resolution levels."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medcompute.server.dicom import j2k
from medcompute.server.store.versions import VersionSpec, parse_version
from tests import store_helpers as H


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    return pydicom.dcmread(H.CT).pixel_array


def test_lossless_codestream_is_bit_exact_and_its_packets_add_up(ct):
    cs = j2k.encode_frame(ct, 16, ratio=None)
    np.testing.assert_array_equal(j2k.decode_frame(cs), ct)
    lay = j2k.layout(cs)
    assert lay.resolutions == 6 and lay.components == 1 and len(lay.packets) == 6
    assert lay.needed(0) + 2 == len(cs)
    assert j2k.error_of(ct, j2k.decode_frame(cs)) == (0.0, None)


def test_lossy_codestream_meets_its_ratio_and_its_measured_error(ct):
    cs = j2k.encode_frame(ct, 16, ratio=10)
    assert ct.nbytes / len(cs) >= 10
    decoded = j2k.decode_frame(cs)
    worst, psnr = j2k.error_of(ct, decoded)
    assert worst == np.abs(decoded.astype(float) - ct).max() > 0
    assert 20 < psnr < 100


def test_prefix_holds_only_the_lower_resolutions_and_decodes(ct):
    cs = j2k.encode_frame(ct, 16, ratio=None)
    lay = j2k.layout(cs)
    errors, sizes = [], []
    for level in range(lay.resolutions):
        cut = j2k.prefix(cs, level)
        assert len(cut) == lay.needed(level) + 2 and cut[:lay.sot] == cs[:lay.sot]
        decoded = j2k.decode_frame(cut)
        assert decoded.shape == ct.shape
        errors.append(float(np.abs(decoded.astype(float) - ct).mean()))
        sizes.append(len(cut))
    assert errors[0] == 0.0
    assert errors == sorted(errors) and sizes == sorted(sizes, reverse=True)
    # level 2 keeps the structure coarser than 4 voxels: 8x8 block means stay close
    coarse = j2k.decode_frame(j2k.prefix(cs, 2)).astype(float)
    blocks = lambda a: a.reshape(16, 8, 16, 8).mean(axis=(1, 3))  # noqa: E731
    assert np.abs(blocks(coarse) - blocks(ct.astype(float))).mean() < 0.5 * errors[2]
    with pytest.raises(ValueError, match="level 6 outside 0..5"):
        j2k.prefix(cs, 6)


@pytest.mark.parametrize("ratio", [None, 10])
def test_reduced_is_the_image_at_the_lower_resolution_from_the_same_packets(ratio):
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:100, 0:75]                      # odd sizes: ceil(n / 2**level)
    image = ((np.sin(x / 17) * np.cos(y / 15) + 1) * 20000
             + rng.normal(0, 300, x.shape)).clip(0, 65535).astype(np.uint16)
    cs = j2k.encode_frame(image, 16, ratio=ratio)
    lay = j2k.layout(cs)
    assert j2k.reduced(cs, 0) == cs
    for level in range(1, lay.resolutions):
        small = j2k.reduced(cs, level)
        decoded = j2k.decode_frame(small)
        assert decoded.shape == (j2k.reduced_size(100, level), j2k.reduced_size(75, level))
        assert decoded.dtype == np.uint16
        kept = j2k.layout(small)                      # one resolution fewer a level
        assert kept.resolutions == lay.resolutions - level
        assert kept.packets == lay.packets[:kept.resolutions]
        assert len(small) <= len(j2k.prefix(cs, level)) < len(cs)
        if ratio is None:   # 5/3: the full-size prefix's even samples are the low-pass band
            np.testing.assert_array_equal(
                decoded, j2k.decode_frame(j2k.prefix(cs, level))[::2 ** level, ::2 ** level])
    assert j2k.reduced_size(100, 2) == 25 and j2k.reduced_size(75, 2) == 19
    with pytest.raises(ValueError, match="level 6 outside 0..5"):
        j2k.reduced(cs, 6)


def test_reduced_keeps_every_component_and_signed_values():
    rng = np.random.default_rng(8)
    signed = rng.integers(-3000, 3000, (64, 48)).astype(np.int16)
    decoded = j2k.decode_frame(j2k.reduced(j2k.encode_frame(signed, 16, ratio=None), 2))
    assert decoded.shape == (16, 12) and decoded.dtype == np.int16 and decoded.min() < 0
    rgb = rng.integers(0, 255, (64, 48, 3)).astype(np.uint8)
    decoded = j2k.decode_frame(j2k.reduced(j2k.encode_frame(rgb, 8, ratio=None, rgb=True), 1))
    assert decoded.shape == (32, 24, 3)


def test_reduced_refuses_a_main_header_it_does_not_know(ct):
    cs = j2k.encode_frame(ct, 16, ratio=None)
    lay = j2k.layout(cs)
    poc = b"\xff\x5f\x00\x09" + bytes(7)                 # a progression order change
    with pytest.raises(j2k.CodestreamError, match="marker 0xff5f in the main header"):
        j2k.reduced(cs[:lay.sot] + poc + cs[lay.sot:], 1)


def test_layout_refuses_what_it_cannot_cut(ct):
    with pytest.raises(j2k.CodestreamError, match="no SOC marker"):
        j2k.layout(b"\x00\x01\x02\x03")
    cs = j2k.encode_frame(ct, 16, ratio=None)
    with pytest.raises(j2k.CodestreamError, match="do not add up"):
        j2k.layout(cs[:-40] + cs[-2:])
    with pytest.raises(j2k.CodestreamError, match="truncated"):
        j2k.layout(cs[:60])


def test_parse_version():
    assert parse_version("review=10") == VersionSpec("review", "review", 10.0)
    assert parse_version("key=25:review") == VersionSpec("key", "review", 25.0)
    assert parse_version("master=lossless:archive") == VersionSpec("master", "archive")
    for text, message in (("review", "NAME=RATIO"), ("review=fast", "a compression ratio"),
                          ("review=1", "> 1"), ("original=10", "'original'"),
                          ("a b=10", "NAME=RATIO")):
        with pytest.raises(ValueError, match=message):
            parse_version(text)
