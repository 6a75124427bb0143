"""The DICOM port's listener: what a caller may hold before and after it is known.

pynetdicom's server accepts every TCP connection in a thread of its own, counts it as an
association from the first byte, and reads each PDU whole (its 4-byte length field says
how much) before anything looks at it. Unbounded, an unknown caller could hold every
association slot with idle connections, or make the server buffer gigabytes. Here:

- **per host**: a connection from a host that already has ``max_per_host`` connections
  open (waiting or associated) is closed at once, before a byte is read
  (``--dicom-max-per-host``); a connection counts until its association's thread ends
  (one closed by its caller before its request, at the latest after the pending timeout);
- **pending connections**: a connection that has not sent its whole A-ASSOCIATE-RQ
  within ``pending_timeout`` seconds is closed (``--dicom-pending-timeout``); waiting
  connections do not count against ``max_associations``: only associations the access
  rules admitted do (:meth:`DicomServer.take_slot`);
- **PDU length**: each PDU's length is read from its 6-byte header before its body: an
  A-ASSOCIATE-RQ, or anything sent before the association is admitted, may be at most
  ``MAX_REQUEST_PDU`` (64 KiB); a P-DATA-TF at most ``max_pdu`` (``--dicom-max-pdu``, the
  maximum length this node also announces in its A-ASSOCIATE-AC); any other PDU 64 KiB.
  A longer one is answered A-ABORT (service provider, invalid PDU parameter value) and
  the connection closed; its body is never read.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.fsm import TRANSITION_TABLE, InvalidEventError, StateMachine
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from medcompute.server.dicomnet.tls import TlsAssociationServer

__all__ = ["Limits", "BoundedSocket", "GuardedDIMSE", "GuardedStateMachine", "DicomServer",
           "TlsDicomServer", "MAX_REQUEST_PDU", "P_DATA_TF"]

log = logging.getLogger(__name__)

#: The largest A-ASSOCIATE-RQ (and any PDU but P-DATA-TF) read: a request with every
#: storage SOP class in a dozen transfer syntaxes is about 40 KiB.
MAX_REQUEST_PDU = 64 << 10
P_DATA_TF = 0x04
#: The PDU types pynetdicom's reader knows (it reads no body after any other header).
_PDU_TYPES = frozenset(range(0x01, 0x08))
_HEADER = struct.Struct(">BBL")       # PDU type, reserved, length of what follows


@dataclass(frozen=True)
class Limits:
    #: Seconds a connection may take to send its whole A-ASSOCIATE-RQ.
    pending_timeout: float = 5.0
    #: Largest P-DATA-TF PDU read (the length its header declares), in bytes.
    max_pdu: int = 16 << 20
    #: Connections open at once from one host (IP address).
    max_per_host: int = 8


class BoundedSocket(AssociationSocket):
    """pynetdicom's association socket, bounding what it reads.

    The PDU header has to be looked at here, in the socket, because pynetdicom's DUL
    reader (``DULServiceProvider._read_pdu_data``) reads the 6-byte header and then, in
    one call, as many bytes as the header declares, buffering them all before any hook
    sees the PDU. It reads nothing else from the socket: each call of :meth:`recv` is
    either a header (6 bytes) or the body the previous header declared, which is how a
    header is told from a body. A refused PDU makes :meth:`recv` return nothing, which
    the reader takes as the transport closed (its Evt17)."""

    limits: Limits
    deadline: float
    read_timeout: float | None
    #: Set once the access rules admitted the association (the SCP's EVT_REQUESTED).
    admitted: bool
    _body: int | None

    def bound(self, limits: Limits, read_timeout: float | None) -> None:
        """Start bounding: the pending deadline runs from now; ``read_timeout`` is the
        socket's timeout once the association is admitted."""
        self.limits = limits
        self.deadline = time.monotonic() + limits.pending_timeout
        self.read_timeout = read_timeout
        self.admitted = False
        self._body = None

    def admit(self) -> None:
        """The access rules admitted the association: P-DATA may have ``max_pdu``, and
        a PDU body that stops coming ends it after ``read_timeout`` (pynetdicom's idle
        timer cannot: its reader waits in the read)."""
        self.admitted = True
        if self.socket is not None:
            self.socket.settimeout(self.read_timeout)

    def _peer(self) -> str:
        info = self.assoc.requestor.address_info
        return info.address if info is not None else "?"

    def recv(self, nr_bytes: int) -> bytearray:
        header = self._body is None
        self._body = None
        if self.admitted or self.socket is None:
            data = super().recv(nr_bytes)
        else:
            data = self._recv_pending(nr_bytes)
            if data is None:
                return bytearray()
        if header and len(data) == _HEADER.size:
            pdu_type, _, length = _HEADER.unpack(bytes(data))
            limit = (self.limits.max_pdu if self.admitted and pdu_type == P_DATA_TF
                     else MAX_REQUEST_PDU)
            if length > limit:
                log.warning("dicom: closed the connection from %s: a PDU of type %02X "
                            "declares %d bytes (at most %d %s)", self._peer(), pdu_type,
                            length, limit, "here" if self.admitted
                            else "before the association is accepted")
                self.refuse()
                return bytearray()
            if pdu_type in _PDU_TYPES:       # the reader reads the body of these only
                self._body = length
        return data

    def _recv_pending(self, nr_bytes: int) -> bytearray | None:
        """Read before the association is admitted, within the pending deadline (None:
        the deadline passed, and the connection is closed)."""
        remaining = self.deadline - time.monotonic()
        if remaining > 0:
            self.socket.settimeout(remaining)
            try:
                return super().recv(nr_bytes)
            except TimeoutError:
                pass
            finally:
                if self.socket is not None:
                    self.socket.settimeout(self.read_timeout if self.admitted else None)
        log.warning("dicom: closed the connection from %s: no whole A-ASSOCIATE-RQ within "
                    "%g s", self._peer(), self.limits.pending_timeout)
        self.refuse()
        return None

    def _shutdown_socket(self) -> None:
        """Shut the connection down and close it. pynetdicom's own skips the close when
        the shutdown fails (a connection its peer has already reset), leaving the socket
        to the garbage collector."""
        sock = self.socket
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def refuse(self) -> None:
        """A-ABORT (service provider, invalid PDU parameter value) and close; the reader
        then sees the transport closed (called in the reader's thread)."""
        sock = self.socket
        if sock is None:
            return
        abort = A_ABORT_RQ()
        abort.source = 0x02
        abort.reason_diagnostic = 0x06
        try:
            sock.settimeout(1.0)
            sock.sendall(abort.encode())
        except OSError:
            pass
        self._shutdown_socket()


class GuardedDIMSE(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider: a message whose command set cannot be decoded (a
    missing Command Field, a bad length) is an invalid PDU (Evt19: A-ABORT, the
    association ends), as pynetdicom already makes one it cannot convert, instead of an
    exception that ends the reader's thread unhandled."""

    def receive_primitive(self, primitive) -> None:
        try:
            super().receive_primitive(primitive)
        except Exception as exc:
            info = self.assoc.requestor.address_info
            log.warning("dicom: aborted the association from %s: a DIMSE message it sent "
                        "cannot be decoded (%s)", info.address if info else "?",
                        type(exc).__name__)
            self.message = None
            self.dul.event_queue.put("Evt19")


class GuardedStateMachine(StateMachine):
    """pynetdicom's DICOM upper layer state machine, made to end an association where
    pynetdicom ends the reader's thread with an unhandled exception:

    - an event that has no transition while the connection is closed or closing (Sta1,
      Sta13), such as a primitive of the local user that lost the race with the peer's
      abort, is ignored;
    - an action that fails on what the peer sent (an A-ASSOCIATE-RQ whose presentation
      context ID is even, say: pynetdicom decodes it, then raises converting it) is
      answered A-ABORT and the connection closed, as an invalid PDU is. pynetdicom has
      already logged it and stopped the reader."""

    def do_action(self, event: str) -> None:
        if ((event, self.current_state) not in TRANSITION_TABLE
                and self.current_state in ("Sta1", "Sta13")):
            log.debug("dicom: ignored %s in %s (the connection is closing)", event,
                      self.current_state)
            return
        try:
            super().do_action(event)
        except InvalidEventError:
            raise
        except Exception as exc:
            sock = self.dul.socket
            info = self.dul.assoc.requestor.address_info
            log.warning("dicom: aborted the connection from %s: what it sent cannot be "
                        "handled (%s)", info.address if info else "?", type(exc).__name__)
            if isinstance(sock, BoundedSocket):
                sock.refuse()
            self.current_state = "Sta1"


class BoundedRequestHandler(RequestHandler):
    """pynetdicom's handler, with a :class:`BoundedSocket`, holding its thread until the
    association ends (so that the server counts the connection until then)."""

    server: DicomServer

    def handle(self) -> None:
        assoc = self._create_association()
        sock = assoc.dul.socket
        # pynetdicom builds the AssociationSocket in _create_association, which also
        # queues its transport-connection event: a second socket would queue a second
        # one. The one built is made a BoundedSocket instead; likewise the association's
        # DIMSE provider and state machine, built by its constructor (the subclasses
        # override methods only, and add no state pynetdicom would have to set up).
        sock.__class__ = BoundedSocket
        sock.bound(self.server.limits, self.ae.network_timeout)
        assoc.dimse.__class__ = GuardedDIMSE
        assoc.dul.state_machine.__class__ = GuardedStateMachine
        evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
        assoc.start()
        assoc.join()


class _Bounded:
    """The limits of a threaded association server (a mixin, before pynetdicom's class)."""

    limits: Limits
    daemon_threads = True

    def setup_limits(self, limits: Limits, max_associations: int) -> None:
        self.limits = limits
        self.max_associations = max_associations
        self._lock = threading.Lock()
        self._hosts: Counter[str] = Counter()
        self._slots: set[int] = set()

    def verify_request(self, request, client_address) -> bool:
        host = client_address[0]
        with self._lock:
            if self._hosts[host] >= self.limits.max_per_host:
                log.warning("dicom: refused a connection from %s: %d already open from that "
                            "host (--dicom-max-per-host)", host, self._hosts[host])
                return False
            self._hosts[host] += 1
        return True

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            host = client_address[0]
            with self._lock:
                self._hosts[host] -= 1
                if self._hosts[host] <= 0:
                    del self._hosts[host]

    def take_slot(self, assoc) -> bool:
        """Count an admitted association against ``max_associations``; False when they
        are all taken. Connections still waiting for their A-ASSOCIATE-RQ never count."""
        with self._lock:
            alive = {id(a) for a in self.active_associations}
            self._slots &= alive
            if len(self._slots) >= self.max_associations:
                return False
            self._slots.add(id(assoc))
        sock = assoc.dul.socket
        if isinstance(sock, BoundedSocket):
            sock.admit()
        return True


class DicomServer(_Bounded, ThreadedAssociationServer):
    """The plain DICOM port."""

    def __init__(self, *args, limits: Limits, max_associations: int, **kw):
        self.setup_limits(limits, max_associations)
        super().__init__(*args, request_handler=BoundedRequestHandler, **kw)


class TlsDicomServer(_Bounded, TlsAssociationServer):
    """The DICOM TLS port: the handshake (in the connection's thread, see :mod:`.tls`)
    counts against the host's connections too."""

    def __init__(self, *args, limits: Limits, max_associations: int, **kw):
        self.setup_limits(limits, max_associations)
        super().__init__(*args, request_handler=BoundedRequestHandler, **kw)
