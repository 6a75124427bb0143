"""Every refusal of the DICOM port's start-up options (dicomnet/node.py): the server stops
before listening, naming the option."""

from __future__ import annotations

import pytest

from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.node import DicomNode, limits_of
from medcompute.server.errors import FailedPrecondition


@pytest.mark.parametrize("options, field, words", [
    (dict(dicom_pending_timeout=0), "--dicom-pending-timeout",
     "expected seconds above 0, at most 3600, got 0"),
    (dict(dicom_pending_timeout=7200), "--dicom-pending-timeout",
     "expected seconds above 0, at most 3600, got 7200"),
    (dict(dicom_max_pdu=1024), "--dicom-max-pdu",
     "expected 4096 bytes (4KiB) to 1073741824 bytes (1GiB), got 1024"),
    (dict(dicom_max_per_host=0), "--dicom-max-per-host", "expected at least 1, got 0"),
])
def test_listener_limits_out_of_range_are_refused(tmp_path, options, field, words):
    with pytest.raises(FailedPrecondition) as caught:
        limits_of(ServerConfig(data_dir=tmp_path, dicom_port=0, **options))
    assert caught.value.field == field and caught.value.message == words


def test_no_associations_at_all_is_refused_before_anything_opens(tmp_path):
    config = ServerConfig(data_dir=tmp_path, dicom_port=0, dicom_max_associations=0)
    with pytest.raises(FailedPrecondition) as caught:
        DicomNode(config, store=None, runner=None)     # refused before either is used
    assert caught.value.field == "--max-associations"
    assert caught.value.message == "expected at least 1"
    assert not list(tmp_path.iterdir())                  # nothing was opened
