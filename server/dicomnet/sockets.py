"""Socket handling for every DICOM association, accepted or requested.

- Nagle's algorithm holds back a small segment while an earlier one is unacknowledged; a
  DIMSE exchange (the last P-DATA fragment of an instance, then its short response) then
  waits for the peer's delayed acknowledgement, about 40 ms on Linux, per instance.
  pynetdicom leaves the option as the system sets it, so the node turns it off itself on
  each connection.
- pynetdicom closes a socket only when its ``shutdown`` succeeds: a peer that has already
  gone (a node that reset the connection, an association that was never accepted) leaves
  the socket open until the garbage collector finds it. The node closes it itself when
  the connection is reported closed.
"""

from __future__ import annotations

import contextlib
import socket

from pynetdicom import evt

__all__ = ["SOCKET_HANDLERS", "opened", "closed"]


def _raw(event):
    return getattr(getattr(event.assoc.dul, "socket", None), "socket", None)


def opened(event) -> None:
    """EVT_CONN_OPEN: TCP_NODELAY on the association's socket (plain or TLS), which is
    kept to be closed with the connection."""
    sock = _raw(event)
    if sock is not None:
        event.assoc.medcompute_socket = sock
        with contextlib.suppress(OSError):      # closed already: nothing to tune
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def closed(event) -> None:
    """EVT_CONN_CLOSE: the socket closed, whatever pynetdicom's shutdown did."""
    sock = getattr(event.assoc, "medcompute_socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


#: The handlers to bind, with the others, to a server or an association.
SOCKET_HANDLERS = [(evt.EVT_CONN_OPEN, opened), (evt.EVT_CONN_CLOSE, closed)]
