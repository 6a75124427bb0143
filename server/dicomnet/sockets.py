"""Socket options for every DICOM association, accepted or requested.

Nagle's algorithm holds back a small segment while an earlier one is unacknowledged; a
DIMSE exchange (the last P-DATA fragment of an instance, then its short response) then
waits for the peer's delayed acknowledgement, about 40 ms on Linux, per instance. pynetdicom
leaves the option as the system sets it, so the node turns it off itself on each connection.
"""

from __future__ import annotations

import contextlib
import socket

from pynetdicom import evt

__all__ = ["NO_DELAY", "no_delay"]


def no_delay(event) -> None:
    """EVT_CONN_OPEN: TCP_NODELAY on the association's socket (plain or TLS)."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):      # closed already: nothing to tune
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


#: The handler to bind, with the others, to a server or an association.
NO_DELAY = (evt.EVT_CONN_OPEN, no_delay)
