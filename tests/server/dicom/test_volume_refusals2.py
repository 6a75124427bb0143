"""A deflated file that would inflate past what the server accepts (dicom/volume.py): refused
before pydicom inflates it, naming the file. The file is pydicom's CT test file grown to
96 MiB of zero pixels, deflated to well under 1 MB."""

from __future__ import annotations

import pytest

from medcompute.server.dicom.volume import load, quiet_pydicom
from medcompute.server.errors import InvalidArgument
from tests import store_helpers as H

pytestmark = pytest.mark.timeout(120)

#: Room for two 128 x 128 slices: the first file passes, the second is refused.
MAX_VOXELS = 2 * 128 * 128


def test_a_deflate_bomb_is_refused_before_it_is_inflated():
    bomb = H.deflate_bomb()
    assert len(bomb) < 1_000_000
    with pytest.raises(InvalidArgument) as caught, quiet_pydicom():
        load([H.data_of("CT_small.dcm"), bomb], max_voxels=MAX_VOXELS, field="input.dicom")
    limit = MAX_VOXELS * 8 + 2**26    # the voxel limit's bytes, plus the headers' allowance
    assert caught.value.field == "input.dicom[1]"
    assert caught.value.message == (
        f"the deflated data set inflates to more than {limit} bytes, more than any image this "
        "server accepts; send the image uncompressed or losslessly compressed")
