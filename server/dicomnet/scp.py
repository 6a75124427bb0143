"""The storage SCP: DICOM associations in, instances into the store (pynetdicom).

pynetdicom runs each association in a thread of its own; the C-STORE handler hands the
instance's bytes to :class:`~medcompute.server.dicomnet.ingress.Ingress` on the server's
event loop and answers only when it is durable. What is checked, and answered how:

- who may call is decided by :class:`~medcompute.server.dicomnet.access.Access`: the
  called AE title must be this node's (else rejected, permanent, service user, "called
  AE title not recognised"), the calling AE title one registered for a subscriber and
  calling from its host or network, a source returning a retrieve of ours, or a node
  reporting a storage commitment (else "calling AE title not recognised"); beyond
  ``max_associations`` admitted at once it is rejected (transient, "local limit
  exceeded"); connections that have not sent their A-ASSOCIATE-RQ do not count, and are
  bounded by the listener (:mod:`.listener`: pending timeout, PDU length, per host); an
  instance from a caller the access rules give no subscriber is refused (0x0110);
- an SOP class or transfer syntax not offered here: the presentation context is refused
  (pynetdicom); a C-STORE on it is answered 0x0122 (SOP class not supported);
- an instance larger than the limit, or one the store cannot take for lack of room:
  0xA700 (out of resources); one whose data set or pixel data cannot be read: 0xC000
  (cannot understand); anything else: 0x0110 (processing failure), logged.

Logs carry AE titles, addresses and statuses, never data set contents.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import TimeoutError as FutureTimeout

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pydicom.uid import (
    JPEGLossless as JPEGLosslessP14,
)
from pynetdicom import AE, AllStoragePresentationContexts, build_context, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from medcompute.server.dicomnet.access import Access, Caller, Refused
from medcompute.server.dicomnet.ingress import Ingress
from medcompute.server.dicomnet.listener import DicomServer, Limits, TlsDicomServer
from medcompute.server.dicomnet.sockets import SOCKET_HANDLERS
from medcompute.server.dicomnet.tls import tls_args
from medcompute.server.errors import InvalidArgument, MedcomputeError, ResourceExhausted
from medcompute.server.storage.space import storage_fault

__all__ = ["StorageSCP", "TRANSFER_SYNTAXES", "STATUS"]

log = logging.getLogger(__name__)

#: Uncompressed first (what pynetdicom picks when a sender offers several), then the
#: compressed syntaxes the store decodes.
TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian, JPEGLosslessSV1, JPEGLosslessP14, JPEGLSLossless, JPEGLSNearLossless,
    JPEG2000Lossless, JPEG2000, RLELossless, JPEGBaseline8Bit, JPEGExtended12Bit,
)

#: The C-STORE statuses this SCP answers (PS3.4 B.2.3).
STATUS = {"success": 0x0000, "out_of_resources": 0xA700, "cannot_understand": 0xC000,
          "processing_failure": 0x0110}
#: Seconds a C-STORE waits for its instance to be stored.
STORE_TIMEOUT = 300.0


#: Seconds a closed connection's series wait for its release to be reported.
RELEASE_GRACE = 5.0


def _status(code: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds


def _reject(assoc, result: int, source: int, diagnostic: int) -> None:
    """Answer an association request A-ASSOCIATE-RJ and end it (from EVT_REQUESTED)."""
    assoc.acse.send_reject(result, source, diagnostic)
    assoc.is_rejected = True
    assoc.is_established = False
    assoc.kill()


def _sent(event, datasets):
    """A C-MOVE's or C-GET's instances, one pending status each, until it is cancelled."""
    for ds in datasets:
        if event.is_cancelled:
            yield 0xFE00, None
            return
        yield 0xFF00, ds

class StorageSCP:
    """One listening AE: C-ECHO and C-STORE of every storage SOP class."""

    def __init__(self, ingress: Ingress, access: Access, *, ae_title: str,
                 max_associations: int, max_instance_bytes: int, index=None, pushes=None,
                 commitments=None, limits: Limits | None = None):
        self.ingress = ingress
        self.index = index                # StoreIndex: Query/Retrieve of the store
        self.pushes = pushes              # PushBook: C-MOVE destinations
        self.access = access              # who may call, and whose an instance is
        self.commitments = commitments    # Commitments: reports of pushes' transactions
        self.ae_title = ae_title
        self.max_instance_bytes = max_instance_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._callers: dict[int, Caller] = {}
        self._series: dict[int, set[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        self.limits = limits or Limits()
        self.max_associations = max_associations
        ae = AE(ae_title=ae_title)
        # Admitted associations are counted by the listener (DicomServer.take_slot), not
        # by pynetdicom, which would count connections still waiting for their request.
        ae.maximum_associations = 1 << 20
        ae.maximum_pdu_size = self.limits.max_pdu      # announced; longer PDUs are refused
        ae.network_timeout = 60
        # A connection that never sends a byte is closed after this (pynetdicom's ARTIM
        # timer); one that sends part of its request, by the listener's socket.
        ae.acse_timeout = self.limits.pending_timeout
        ae.dimse_timeout = 60
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            # Both roles: a C-GET requestor takes the SCP role of its storage contexts.
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES,
                                     scu_role=True, scp_role=True)
        if index is not None:
            for model in (StudyRootQueryRetrieveInformationModelFind,
                          StudyRootQueryRetrieveInformationModelMove,
                          StudyRootQueryRetrieveInformationModelGet,
                          PatientRootQueryRetrieveInformationModelFind,
                          PatientRootQueryRetrieveInformationModelMove,
                          PatientRootQueryRetrieveInformationModelGet):
                ae.add_supported_context(model)
        if commitments is not None:
            # A destination reporting a commitment calls in as Storage Commitment SCP.
            ae.add_supported_context(StorageCommitmentPushModel, scu_role=True,
                                     scp_role=True)
        self.ae = ae

    # -- life-cycle -------------------------------------------------------------------
    def start(self, address: str, port: int, ssl_context=None) -> int:
        """Listen (in threads); the port bound (0 picks a free one). With ``ssl_context``
        every association is DICOM TLS."""
        self._loop = asyncio.get_running_loop()
        handlers = [(evt.EVT_REQUESTED, self._on_requested), (evt.EVT_C_ECHO, self._on_echo),
                    (evt.EVT_C_STORE, self._on_store), (evt.EVT_RELEASED, self._on_released),
                    (evt.EVT_ABORTED, self._on_ended), (evt.EVT_CONN_CLOSE, self._on_ended),
                    (evt.EVT_C_FIND, self._on_find), (evt.EVT_C_MOVE, self._on_move),
                    (evt.EVT_C_GET, self._on_get), *SOCKET_HANDLERS]
        if self.commitments is not None:
            handlers.append((evt.EVT_N_EVENT_REPORT, self.commitments.on_report))
        server = self.ae.make_server(
            (address, port), evt_handlers=handlers, limits=self.limits,
            max_associations=self.max_associations,
            server_class=DicomServer if ssl_context is None else TlsDicomServer)
        if ssl_context is not None:
            server.tls_context = ssl_context
        threading.Thread(target=server.serve_forever, name="dicom-acceptor",
                         daemon=True).start()
        self.ae._servers.append(server)     # as start_server does: shutdown removes it
        self._server = server
        return self._server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # -- handlers (association threads) ---------------------------------------------
    def _on_requested(self, event) -> None:
        assoc = event.assoc
        rq = assoc.requestor.primitive
        calling = (rq.calling_ae_title or "").strip()
        address = assoc.requestor.address
        decided = self.access.admit(calling, rq.called_ae_title or "", address)
        if isinstance(decided, Refused):
            log.warning("dicom: rejected an association from %s (calling AE %r): %s", address,
                        calling, decided.why)
            # Rejected permanent, by the service user, with the reason.
            _reject(assoc, 0x01, 0x01, decided.diagnostic)
            return
        if not self._server.take_slot(assoc):
            log.warning("dicom: rejected an association from %s (calling AE %r): %d "
                        "associations at once (--max-associations)", address, calling,
                        self.max_associations)
            # Rejected transient, by the service provider: local limit exceeded.
            _reject(assoc, 0x02, 0x03, 0x02)
            return
        if decided.registered is None:
            log.info("dicom: %r at %s calls in to return a retrieve or report a storage "
                     "commitment", calling, address)
        with self._lock:
            self._callers[id(assoc)] = decided

    def _on_echo(self, event) -> int:
        return 0x0000

    def _run(self, coro, timeout: float):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _on_store(self, event) -> Dataset:
        assoc = event.assoc
        with self._lock:
            caller = self._callers.get(id(assoc))
        request = event.request
        owner = None if caller is None else self.access.store_owner(
            caller, request.MoveOriginatorApplicationEntityTitle,
            request.MoveOriginatorMessageID)
        if owner is None:                # a node calling in only to report a commitment
            log.warning("dicom: refused an instance from %r: it may not store here",
                        caller.ae_title if caller else "")
            return _status(STATUS["processing_failure"], "calling AE not registered")
        size = event.request.DataSet.getbuffer().nbytes
        if size > self.max_instance_bytes:
            log.warning("dicom: refused an instance of %d bytes from %s (limit %d)", size,
                        caller.ae_title, self.max_instance_bytes)
            return _status(STATUS["out_of_resources"],
                           f"instance over {self.max_instance_bytes} bytes")
        data = event.encoded_dataset(include_meta=True)
        called = (assoc.requestor.primitive.called_ae_title or self.ae_title).strip()
        try:
            kept = self._run(self.ingress.receive(data, owner=owner,
                                                  calling=caller.ae_title, called=called),
                             STORE_TIMEOUT)
        except ResourceExhausted as exc:
            log.warning("dicom: an instance from %s refused: %s", caller.ae_title, exc.details)
            return _status(STATUS["out_of_resources"], exc.message)
        except InvalidArgument as exc:
            log.warning("dicom: an instance from %s cannot be read: %s", caller.ae_title,
                        exc.details)
            return _status(STATUS["cannot_understand"], exc.message)
        except MedcomputeError as exc:
            log.error("dicom: an instance from %s failed: %s", caller.ae_title, exc.details)
            return _status(STATUS["processing_failure"], exc.message)
        except FutureTimeout:
            log.error("dicom: storing an instance from %s took over %.0f s", caller.ae_title,
                      STORE_TIMEOUT)
            return _status(STATUS["processing_failure"], "storing the instance timed out")
        except Exception as exc:
            fault = storage_fault(exc)   # a disk filled or failing under the write
            if fault is None:
                log.exception("dicom: storing an instance from %s failed", caller.ae_title)
                return _status(STATUS["processing_failure"], "internal error")
            log.warning("dicom: an instance from %s not stored: %s", caller.ae_title,
                        fault.details)
            full = isinstance(fault, ResourceExhausted)
            return _status(STATUS["out_of_resources" if full else "processing_failure"],
                           fault.message)
        with self._lock:
            self._series.setdefault(id(assoc), set()).add((owner, kept.series_uid))
        return _status(STATUS["success"])

    # -- Query/Retrieve of the store -------------------------------------------------
    def _caller(self, event) -> Caller | None:
        """The caller of the event's association, where it may query and retrieve."""
        with self._lock:
            caller = self._callers.get(id(event.assoc))
        return caller if caller is not None and caller.subscriber is not None else None

    def _on_find(self, event):
        caller = self._caller(event)
        if caller is None or self.index is None:
            yield 0xC000, None
            return
        try:
            patient_root = (event.request.AffectedSOPClassUID ==
                            PatientRootQueryRetrieveInformationModelFind)
            replies = self._run(self.index.find(caller.subscriber, event.identifier,
                                                patient_root=patient_root), 120)
        except ValueError:
            yield 0xA900, None          # identifier does not match SOP class (level)
            return
        except Exception:
            log.exception("dicom: a query from %s failed", caller.ae_title)
            yield 0xC001, None
            return
        for reply in replies:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, reply

    def _instances(self, caller: Caller, identifier):
        return self._run(self.index.datasets(caller.subscriber, identifier), 300)

    def _on_move(self, event):
        caller = self._caller(event)
        if caller is None or self.index is None or self.pushes is None:
            yield None, None
            return
        destination = event.move_destination.strip()
        nodes = self._run(self.pushes.nodes(caller.subscriber), 30)
        node = next((n for n in nodes if n.ae_title == destination), None)
        if node is None:
            log.warning("dicom: C-MOVE from %s to an AE title that is not one of its "
                        "subscriber's nodes", caller.ae_title)
            yield None, None            # pynetdicom answers A801: destination unknown
            return
        datasets = self._instances(caller, event.identifier)
        # The sub-association proposes exactly what it sends: each SOP class in the
        # transfer syntax its instances are stored in.
        pairs = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                        for ds in datasets})[:128]
        options = {"contexts": [build_context(*p) for p in pairs]}
        if node.tls is not None:
            options["tls_args"] = tls_args(node.tls, node.host)
        yield node.host, node.port, options
        yield len(datasets)
        yield from _sent(event, datasets)

    def _on_get(self, event):
        caller = self._caller(event)
        if caller is None or self.index is None:
            yield 0
            return
        datasets = self._instances(caller, event.identifier)
        yield len(datasets)
        yield from _sent(event, datasets)

    def _on_released(self, event) -> None:
        keys = self._forget(event.assoc)
        if keys and self._loop is not None and not self._loop.is_closed():
            try:
                self._run(self.ingress.released(keys), 30)
            except Exception:
                log.exception("dicom: marking released series failed")

    def _on_ended(self, event) -> None:
        if event.event is evt.EVT_ABORTED:
            self._forget(event.assoc)
            return
        # The connection closed. After a release, pynetdicom's DUL thread can report the
        # close (the peer hung up on the A-RELEASE-RP) before the association's thread
        # reports the release: forgetting the association's series now would lose the
        # release, and the series would complete only after --series-quiet. So a closed
        # connection's series are forgotten a little later, when a release has had its
        # turn (an association that ended without one completes by quiet, as before).
        timer = threading.Timer(RELEASE_GRACE, self._forget, (event.assoc,))
        timer.daemon = True
        timer.start()

    def _forget(self, assoc) -> set[tuple[str, str]]:
        with self._lock:
            self._callers.pop(id(assoc), None)
            return self._series.pop(id(assoc), set())
