"""Which servers the client hands shared memory to (client/shm.py): those on this host."""

from __future__ import annotations

import pytest

from medcompute.client.shm import is_local


@pytest.mark.parametrize("address, local", [
    ("127.0.0.1:50051", True), ("localhost:50051", True), ("[::1]:50051", True),
    ("ipv4:127.0.0.1:50051", True), ("unix:/tmp/medcompute.sock", True),
    ("127.0.0.5:50051", True), ("10.0.0.7:50051", False), ("pacs.example.org:50051", False),
    ("ipv4:127.0.0.1:50051,127.0.0.1:50052", False), ("[2001:db8::1]:50051", False),
])
def test_only_a_loopback_or_unix_address_is_local(address, local):
    assert is_local(address) is local
