"""The refusals of dicom/registry.py's calling AE titles: the host an AE may call from
(never every address) and the subscriber it sends for."""

from __future__ import annotations

import pytest

from medcompute.server.dicomnet.registry import NodeRegistry, check_ae_title, check_caller_host
from medcompute.server.errors import InvalidArgument

EXPECTED = ("expected the IP address, network (CIDR, such as 10.0.4.0/24) or host name the "
            "AE calls from")


@pytest.mark.parametrize("host, words", [
    ("0.0.0.0/0", f"{EXPECTED}; '0.0.0.0/0' is every address: name the scanner's own "
                  "address or network"),
    ("::/0", f"{EXPECTED}; '::/0' is every address: name the scanner's own address or "
             "network"),
    ("0.0.0.0", f"{EXPECTED}; '0.0.0.0' is no one address"),
    ("::", f"{EXPECTED}; '::' is no one address"),
])
def test_a_host_that_is_no_scanner_is_refused(host, words):
    with pytest.raises(InvalidArgument) as caught:
        check_caller_host(host, "host")
    assert caught.value.field == "host" and caught.value.message == words
    assert check_caller_host("10.0.4.7/24", "host") == "10.0.4.0/24"


def test_a_calling_ae_without_its_subscriber_is_refused(tmp_path):
    registry = NodeRegistry(tmp_path)
    try:
        with pytest.raises(InvalidArgument) as caught:
            registry.add_ae_now("CT_SCANNER_1", "", "10.0.4.7")
        assert caught.value.field == "subscriber"
        assert caught.value.message == "expected the subscriber the AE title sends for"
        assert registry.add_ae_now("CT_SCANNER_1", "clinic-a", "10.0.4.7").host == "10.0.4.7"
    finally:
        registry.close()


@pytest.mark.parametrize("title, shown", [
    ("CT\\SCANNER", "'CT\\\\SCANNER'"),
    ("   ", "'   '"),
    ("A" * 300, "'" + "A" * 64 + "'…"),
])
def test_an_ae_title_that_is_not_one_is_refused_and_not_echoed_whole(title, shown):
    with pytest.raises(InvalidArgument) as caught:
        check_ae_title(title, "ae_title")
    assert caught.value.field == "ae_title"
    assert caught.value.message == ("expected 1 to 16 printable ASCII characters without a "
                                    f"backslash, not all spaces; got {shown}")
