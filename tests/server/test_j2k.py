"""The JPEG 2000 codestreams of stored versions: lossless round trip, the layout parsed
from their headers, and prefixes decoded at lower resolution levels."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medcompute.server import j2k
from medcompute.server.versions import VersionSpec, parse_version
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
