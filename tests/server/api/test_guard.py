"""The guard (api/guard.py): the source a refused call is counted under."""

import pytest

from medcompute.server.api.guard import peer_host


@pytest.mark.parametrize("peer, host", [
    ("ipv4:127.0.0.1:5000", "127.0.0.1"),
    ("ipv6:[::1]:5000", "::1"),
    ("ipv6:[2001:db8::7]:443", "2001:db8::7"),
    ("unix:/run/medcompute.sock", "unix"),
    ("", "unknown"),
])
def test_the_host_of_a_peer(peer, host):
    assert peer_host(peer) == host
