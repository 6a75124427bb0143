"""The refusal of a compressed version whose configured ratio JPEG 2000 cannot reach
(worker/version_tasks.py), on pydicom's CT test file."""

from __future__ import annotations

from pydicom.data import get_testdata_file

from medcompute.server.worker.version_tasks import make_version

CT = get_testdata_file("CT_small.dcm")          # 128 x 128, 16 bits allocated


def test_a_ratio_the_codestreams_headers_alone_exceed_is_refused(tmp_path):
    with open(CT, "rb") as f:
        size = len(f.read())
    # The worker answers the refusal as its result; the server raises it (versions.py).
    answer = make_version(CT, [size], str(tmp_path / "version"), name="review", ratio=1000.0)
    assert answer["field"] == "version"
    assert answer["refused"] == ("JPEG 2000 does not reach a compression ratio of 1000.0 on "
                                  "frames of 32768 bytes (the codestream's headers alone are "
                                  "too large); configure a lower ratio")
    assert not (tmp_path / "version").exists()
    make_version(CT, [size], str(tmp_path / "version"), name="review", ratio=10.0)
