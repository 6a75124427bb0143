"""Every refusal of dicom/offload.py's check of a source's storage-offload settings."""

from __future__ import annotations

import pytest

from medcompute.server.dicomnet.offload import Offload, check_offload
from medcompute.server.errors import InvalidArgument

URL = "http://pacs.example:8042"


@pytest.mark.parametrize("offload, every, field, words", [
    (Offload(below_percent=10), 3600, "source.offload_below_percent",
     "a storage offload threshold needs the source's capacity_url"),
    (Offload(max_mib=1000), 3600, "source.capacity_max_mib",
     "a storage offload threshold needs the source's capacity_url"),
    (Offload(url="ftp://pacs.example", below_percent=10), 3600, "source.capacity_url",
     "expected http://HOST:PORT or https://HOST:PORT, got 'ftp://pacs.example'"),
    (Offload(url=URL), 3600, "source.offload_below_percent",
     "expected one threshold: offload_below_percent or offload_below_mib"),
    (Offload(url=URL, below_percent=5, below_mib=100), 3600, "source.offload_below_percent",
     "expected one threshold: offload_below_percent or offload_below_mib"),
    (Offload(url=URL, below_percent=120), 3600, "source.offload_below_percent",
     "expected a percentage between 0 and 100, got 120"),
    (Offload(url=URL, below_mib=2000, max_mib=1000), 3600, "source.offload_below_mib",
     "expected a threshold below the source's maximum storage"),
    (Offload(url=URL, below_percent=10), 0, "source.every_seconds",
     "the capacity is checked on the source's schedule: set every_seconds"),
])
def test_offload_settings_that_cannot_work_are_refused(offload, every, field, words):
    with pytest.raises(InvalidArgument) as caught:
        check_offload(offload, every)
    assert caught.value.field == field and caught.value.message == words
    assert check_offload(Offload(url=URL + "/", below_percent=10), 3600).url == URL
