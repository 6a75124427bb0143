"""Opening a DICOM association to a node: whether it takes a connection at all (with a
TLS handshake where it is configured), and the association itself, with a rejection read
as (transient, reason). Used by the pushes (push.py), the collections (collect.py) and
the film sessions (films.py).

Every association opened here keeps its responses for the call waiting for them
(:func:`keep_responses`).
"""

from __future__ import annotations

import socket

from pynetdicom import AE, evt
from pynetdicom.pdu import A_ASSOCIATE_RJ

from medcompute.server.dicomnet.sockets import SOCKET_HANDLERS
from medcompute.server.dicomnet.tls import Tls, probe, tls_args

__all__ = ["associate", "classify_rejection", "keep_responses", "reach", "reachable"]

_REJECT_REASONS = {(1, 1): "no reason given", (1, 2): "application context not supported",
                   (1, 3): "calling AE title not recognised",
                   (1, 7): "called AE title not recognised", (2, 1): "no reason given",
                   (2, 2): "protocol version not supported", (3, 1): "temporary congestion",
                   (3, 2): "local limit exceeded"}


def classify_rejection(result: int, source: int, diagnostic: int) -> tuple[bool, str]:
    """(transient, reason) of an A-ASSOCIATE-RJ."""
    kind = "permanent" if result == 1 else "transient"
    why = _REJECT_REASONS.get((source, diagnostic), f"diagnostic {diagnostic}")
    return result != 1, f"association rejected ({kind}): {why}"


def reachable(host: str, port: int, timeout: float) -> str:
    """Empty when a TCP connection to host:port opens, else why not. (pynetdicom reports a
    refused connection only in its log, and leaves its socket open.)"""
    try:
        socket.create_connection((host, port), timeout).close()
    except OSError as exc:
        return str(exc.strerror or exc)
    return ""


def reach(host: str, port: int, tls: Tls | None, timeout: float) -> tuple[bool, str] | None:
    """None when host:port takes a connection (with ``tls``, a TLS handshake too); else
    (transient, reason): "unreachable (...)" is transient, a TLS refusal is not."""
    if tls is not None:
        return probe(host, port, tls, timeout)
    unreachable = reachable(host, port, timeout)
    return (True, f"unreachable ({unreachable})") if unreachable else None


def keep_responses(assoc) -> None:
    """Make ``assoc``'s reactor leave responses on its DIMSE queue for the ``send_*`` call
    that waits for them.

    pynetdicom's association runs a reactor thread that takes each message off the DIMSE
    queue and serves it if it is a request (a response it drops with a warning). A
    ``send_*`` call pauses it first: it clears the reactor's checkpoint and waits for its
    ``_is_paused`` flag. The reactor sets that flag just before it passes the checkpoint,
    so when it is preempted there (a loaded machine), the call sees it paused, sends, and
    the reactor then takes the response off the queue: the call waits for the DIMSE
    timeout and the association is aborted. Here the reactor's non-blocking reads take only
    requests; the waiting call's blocking read is pynetdicom's own."""
    dimse = getattr(assoc, "dimse", None)
    if dimse is None or getattr(dimse, "_responses_kept", False):
        return
    blocking_get = dimse.get_msg
    messages = dimse.msg_queue

    def get_msg(block: bool = False):
        if block:
            return blocking_get(True)
        with messages.mutex:      # the reactor's read: the first request, if any
            for i, (_, msg) in enumerate(messages.queue):
                if msg is not None and msg.is_valid_request:
                    item = messages.queue[i]
                    del messages.queue[i]
                    return item
        return None, None

    dimse.get_msg = get_msg
    dimse._responses_kept = True


def associate(ae: AE, host: str, port: int, ae_title: str, tls: Tls | None,
              evt_handlers: list | None = None, **kw):
    """``ae.associate`` to host:port, and (transient, reason) when the peer rejected it.

    The rejection is read from the A-ASSOCIATE-RJ PDU as it arrives: a peer that rejects
    and closes at once can end the transport before pynetdicom looks at its reply, and the
    association then reads as never connected rather than rejected."""
    rejections = []

    def on_pdu(event):
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            rejections.append(event.pdu)

    handlers = [*(evt_handlers or []), (evt.EVT_PDU_RECV, on_pdu), *SOCKET_HANDLERS]
    assoc = ae.associate(host, port, ae_title=ae_title, evt_handlers=handlers,
                         tls_args=tls_args(tls, host), **kw)
    if assoc.is_established:
        keep_responses(assoc)
        return assoc, None
    if assoc.is_rejected:
        rj = assoc.acceptor.primitive
        return assoc, classify_rejection(rj.result, rj.result_source, rj.diagnostic)
    if rejections:
        rj = rejections[0]
        return assoc, classify_rejection(rj.result, rj.source, rj.reason_diagnostic)
    return assoc, None
