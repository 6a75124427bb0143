"""Push delivery: a routed job's result sent by C-STORE to the recipient's DICOM nodes.

A push is a row (pending, sending, delivered, failed) made when the rule starts the job,
so it survives a restart. A front end takes a push for sending with its owner (the
server's runner id) and a lease, renewed while it sends; a push left ``sending`` whose
lease ran out (its front end was killed, or lost the catalog) is pending again for any
front end (the instances are sent again; a receiver keeps one copy per SOP Instance UID),
while one whose front end is alive on another host is left to it. A front end records a
push's end only while it still owns it. Once
the job has succeeded, the server opens the association itself and sends every
instance of the result. "Delivered" means every instance was answered with status
0000; a warning (Bxxx) or failure status never counts. Transient failures (the node
unreachable, a transient association rejection, out of resources A7xx, processing
failure 0110) are tried again with exponential backoff up to ``max_attempts``;
permanent ones (a permanent rejection, e.g. "called AE title not recognised";
A9xx/Cxxx; warnings) end the push at once. Where the node accepts Storage Commitment
(see :mod:`.commit`), "delivered" also means committed; a failed commitment fails the
push, a report that does not come within ``commit_timeout`` is a transient failure, and a
refused commitment request leaves the push delivered, not committed, with the reason.
Each push says which in its ``proof``. A node registered with TLS is associated over
DICOM TLS (see :mod:`.tls`); a certificate that does not verify, or a failed handshake,
is permanent. The sending loop, and the push leases it holds, are in :mod:`.pusher`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass

import pydicom
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, evt
from pynetdicom import _config as pynetdicom_config

from medcompute.server.dicomnet import commit
from medcompute.server.dicomnet.association import (
    associate,
    classify_rejection,
    reach,
    reachable,
)
from medcompute.server.dicomnet.commit import Commitments
from medcompute.server.dicomnet.registry import check_address, check_ae_title
from medcompute.server.dicomnet.tls import Tls, check_tls, dumps, loads
from medcompute.server.errors import NotFound, shown_id
from medcompute.server.storage.db import add_columns, table
from medcompute.server.storage.deliveries import (
    PUSH_SCHEMA,
    DeliveryLog,
    create_instances,
    record_instances,
)
from medcompute.server.storage.keys import check_subscriber

__all__ = ["PushBook", "reachable", "Node", "PushRow", "classify_status",
           "classify_rejection", "PROOF", "proof_of", "add_push", "delete_node", "due", "node",
           "nodes", "pushes", "put_node", "resume", "update", "claim", "renew_push",
           "take_over"]

log = logging.getLogger(__name__)

PROOF = "C-STORE success per instance; storage commitment not requested"


def proof_of(row: PushRow) -> str:
    """What "delivered" means for this push (older rows: commitment not requested)."""
    return row.proof or (PROOF if row.state == "delivered" else "")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dicom_node (
    subscriber TEXT NOT NULL,
    name       TEXT NOT NULL,
    ae_title   TEXT NOT NULL,
    host       TEXT NOT NULL,
    port       INTEGER NOT NULL,
    created_at REAL NOT NULL,
    tls        TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (subscriber, name)
);
""" + PUSH_SCHEMA  # the pushes table is storage/deliveries.py's


@dataclass(frozen=True)
class Node:
    subscriber: str
    name: str
    ae_title: str
    host: str
    port: int
    created_at: float
    tls: Tls | None = None


_NODE = "subscriber, name, ae_title, host, port, created_at, tls"


def _node(row) -> Node:
    return Node(*row[:6], loads(row[6]))


@dataclass(frozen=True)
class PushRow:
    push_id: str
    job_id: str
    sender: str
    recipient: str
    node: str
    state: str
    reason: str
    attempts: int
    delivered: int
    next_at: float
    created_at: float
    updated_at: float
    proof: str = ""

    @property
    def committed(self) -> bool:
        return self.proof == commit.COMMITTED


_PUSH = ("push_id, job_id, sender, recipient, node, state, reason, attempts, delivered, "
         "next_at, created_at, updated_at, proof")


def classify_status(code: int) -> bool | None:
    """None: success; True: a transient failure (try again); False: a permanent one."""
    if code == 0x0000:
        return None
    if (code & 0xFF00) == 0xA700 or code in (0x0110, 0x0213):
        return True
    return False            # A9xx, Cxxx, 01xx refusals and every Bxxx warning


def create(tx) -> None:
    """The node and push tables; a catalog written before storage commitment (its pushes
    have no proof column) or before DICOM TLS (its nodes have no tls column) gets them."""
    tx.executescript(_SCHEMA)
    add_columns(tx, "dicom_push", {"proof": "TEXT NOT NULL DEFAULT ''"})
    add_columns(tx, "dicom_node", {"tls": "TEXT NOT NULL DEFAULT ''"})


def push_leases(tx) -> None:
    """A push being sent names its front end (``owner``) and how long it holds it
    (``lease_until``); a push a catalog has from before is free to take (lease 0)."""
    add_columns(tx, "dicom_push", {"owner": "TEXT NOT NULL DEFAULT ''",
                                   "lease_until": "REAL NOT NULL DEFAULT 0"})


#: The node and push tables' migration (version 2: the push leases).
MIGRATION = table(create, push_leases)


# -- nodes --------------------------------------------------------------------------------
def put_node(tx, node: Node) -> None:
    """Keep a checked node (a new one, or new settings of one of that name)."""
    tx.execute(f"INSERT INTO dicom_node ({_NODE}) VALUES (?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT(subscriber, name) DO UPDATE SET ae_title = excluded.ae_title, "
               "host = excluded.host, port = excluded.port, tls = excluded.tls",
               (node.subscriber, node.name, node.ae_title, node.host, node.port,
                node.created_at, dumps(node.tls)))


def delete_node(tx, subscriber: str, name: str) -> bool:
    """False when there is no such node."""
    return bool(tx.execute("DELETE FROM dicom_node WHERE subscriber = ? AND name = ?",
                           (subscriber, name)).rowcount)


def nodes(tx, subscriber: str) -> list[Node]:
    return [_node(r) for r in tx.execute(
        f"SELECT {_NODE} FROM dicom_node WHERE subscriber = ? ORDER BY name", (subscriber,))]


def node(tx, subscriber: str, name: str) -> Node | None:
    rows = tx.execute(f"SELECT {_NODE} FROM dicom_node WHERE subscriber = ? AND name = ?",
                      (subscriber, name)).fetchall()
    return _node(rows[0]) if rows else None


# -- pushes -------------------------------------------------------------------------------
def add_push(tx, push_id: str, job_id: str, sender: str, recipient: str, node: str,
             now: float) -> None:
    """A pending push of ``job_id``'s result to ``recipient``'s node (once per node)."""
    tx.execute("INSERT INTO dicom_push (push_id, job_id, sender, recipient, node, "
               "state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) "
               "ON CONFLICT DO NOTHING",
               (push_id, job_id, sender, recipient, node, now, now))


def due(tx, now: float) -> list[PushRow]:
    return [PushRow(*r) for r in tx.execute(
        f"SELECT {_PUSH} FROM dicom_push WHERE state = 'pending' AND next_at <= ? "
        "ORDER BY next_at", (now,))]


def update(tx, push_id: str, state: str, reason: str, attempts, delivered: int,
           next_at: float, proof: str, now: float, instances=(), *, pending: bool = False,
           owner: str | None = None) -> bool:
    """A push's new state (``attempts`` None keeps the count) and what the try did with
    each instance (``instances``: see deliveries.record_instances); with ``pending``, only
    while it is pending (no front end has taken it meanwhile); with ``owner``, only while
    that front end is sending it (its lease has not been taken over). False: nothing
    changed (and no instance recorded)."""
    sql = ("UPDATE dicom_push SET state = ?, reason = ?, attempts = COALESCE(?, attempts),"
           " delivered = ?, next_at = ?, updated_at = ?, proof = ? WHERE push_id = ?")
    args: tuple = (state, reason, attempts, delivered, next_at, now, proof, push_id)
    if pending:
        sql += " AND state = 'pending'"
    if owner is not None:
        sql, args = sql + " AND state = 'sending' AND owner = ?", (*args, owner)
    changed = bool(tx.execute(sql, args).rowcount)
    if changed and instances:
        record_instances(tx, push_id, instances, now)
    return changed


def claim(tx, push_id: str, attempts: int, now: float, owner: str = "",
          lease_seconds: float = 30.0) -> bool:
    """Take a pending push for sending (try ``attempts``) as ``owner`` for
    ``lease_seconds``; False, changing nothing, when it is no longer pending (another
    front end on the shared catalog took it first)."""
    return bool(tx.execute(
        "UPDATE dicom_push SET state = 'sending', reason = '', attempts = ?, delivered = 0, "
        "next_at = 0, updated_at = ?, proof = '', owner = ?, lease_until = ? "
        "WHERE push_id = ? AND state = 'pending'",
        (attempts, now, owner, now + lease_seconds, push_id)).rowcount)


def renew_push(tx, push_id: str, owner: str, until: float) -> bool:
    """Extend ``owner``'s lease on the push it sends to ``until``; False when it is no
    longer its to send (the lease ran out and another front end took the push over)."""
    return bool(tx.execute(
        "UPDATE dicom_push SET lease_until = ? WHERE push_id = ? AND state = 'sending' "
        "AND owner = ?", (until, push_id, owner)).rowcount)


def take_over(tx, now: float) -> int:
    """Pushes left ``sending`` whose lease ran out by ``now`` (their front end stopped or
    lost the catalog) are pending again; how many. One a live front end is sending (on
    this host or another) is left alone."""
    return tx.execute("UPDATE dicom_push SET state = 'pending', next_at = 0 "
                      "WHERE state = 'sending' AND lease_until < ?", (now,)).rowcount


def resume(tx) -> int:
    """Every push left ``sending`` is pending again, leases or not; how many (for a
    catalog no front end uses: the server takes over with :func:`take_over`)."""
    return tx.execute("UPDATE dicom_push SET state = 'pending', next_at = 0 "
                      "WHERE state = 'sending'").rowcount


def pushes(tx, subscriber: str, job_id: str = "") -> list[PushRow]:
    """Pushes the subscriber sent or receives (of ``job_id`` when given), newest first."""
    sql = (f"SELECT {_PUSH} FROM dicom_push WHERE (sender = ? OR recipient = ?)"
           + (" AND job_id = ?" if job_id else "") + " ORDER BY created_at DESC")
    args = (subscriber, subscriber, job_id) if job_id else (subscriber, subscriber)
    return [PushRow(*r) for r in tx.execute(sql, args)]


class PushBook(DeliveryLog):
    """DICOM nodes of receiving subscribers and the pushes to them, in the catalog file: a
    facade over this module's table functions, built on the server's shared Database or on
    a data directory (it then opens its own)."""

    TABLES = (MIGRATION, create_instances)

    # -- nodes ----------------------------------------------------------------------
    async def add_node(self, subscriber: str, name: str, ae_title: str, host: str,
                       port: int, tls: Tls | None = None) -> Node:
        check_subscriber(name, "node.name")
        title = check_ae_title(ae_title, "node.ae_title")
        check_address(host, port, "node", "the node's")
        if tls is not None:
            tls = check_tls(tls, "node.tls")
        new = Node(subscriber, name, title, host, port, time.time(), tls)
        await self.db.read(put_node, new)
        return new

    async def delete_node(self, subscriber: str, name: str) -> None:
        if not await self.db.read(delete_node, subscriber, name):
            raise NotFound(f"no DICOM node {shown_id(name)}", "name")

    async def nodes(self, subscriber: str) -> list[Node]:
        return await self.db.read(nodes, subscriber)

    async def node(self, subscriber: str, name: str) -> Node | None:
        return await self.db.read(node, subscriber, name)

    # -- pushes ---------------------------------------------------------------------
    async def add_push(self, job_id: str, sender: str, recipient: str, node: str) -> None:
        await self.db.read(add_push, uuid.uuid4().hex, job_id, sender, recipient, node,
                           time.time())

    async def due(self) -> list[PushRow]:
        return await self.db.read(due, time.time())

    async def update(self, push_id: str, state: str, *, reason: str = "", attempts=None,
                     delivered: int = 0, next_at: float = 0.0, proof: str = "",
                     instances=(), pending: bool = False, owner: str | None = None) -> bool:
        """False when ``pending``/``owner`` no longer hold (see :func:`update`)."""
        return await self.db.read(functools.partial(update, pending=pending, owner=owner),
                                  push_id, state, reason, attempts, delivered, next_at,
                                  proof, time.time(), instances)

    async def claim(self, push_id: str, attempts: int, owner: str = "",
                    lease_seconds: float = 30.0) -> bool:
        """Take a pending push for sending; False when another front end took it."""
        return await self.db.read(claim, push_id, attempts, time.time(), owner,
                                  lease_seconds)

    async def renew(self, push_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend ``owner``'s lease on a push it sends; False when it lost it."""
        return await self.db.read(renew_push, push_id, owner, time.time() + lease_seconds)

    async def take_over(self) -> int:
        """Pushes left ``sending`` whose lease ran out are pending again."""
        return await self.db.read(take_over, time.time())

    async def resume(self) -> int:
        """Every push left ``sending`` is pending again (no front end may be using the
        catalog)."""
        return await self.db.read(resume)

    async def pushes(self, subscriber: str, job_id: str = "") -> list[PushRow]:
        """Pushes the subscriber sent or receives."""
        return await self.db.read(pushes, subscriber, job_id)


@dataclass
class Outcome:
    transient: bool | None          # None: delivered
    reason: str
    delivered: int
    proof: str = ""
    #: Each instance: (SOP Instance UID, C-STORE status or None, commitment's word on it).
    instances: list = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class _Instance:
    """One file to send: what its file meta says (a file without one is sent as the
    dataset pydicom parsed, ``dataset``)."""

    SOPClassUID: str
    SOPInstanceUID: str
    TransferSyntaxUID: str
    path: str = ""
    dataset: pydicom.Dataset | None = None


_META = ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")


def _spool(files, folder: str) -> list[_Instance]:
    """Each file written to ``folder`` for pynetdicom to send from (its dataset read from
    the file in PDU-sized pieces, never parsed or encoded again), with its file meta."""
    instances = []
    for i, data in enumerate(files):
        path = os.path.join(folder, f"{i:06d}.dcm")
        with open(path, "wb") as f:
            f.write(data)
        meta = None
        if bytes(data[128:132]) == b"DICM":
            with contextlib.suppress(Exception):   # damaged meta: sent as a dataset
                meta = read_file_meta_info(path)
        uids = [meta.get(k) if meta is not None else None for k in _META]
        if all(uids):
            instances.append(_Instance(*(str(u) for u in uids), path=path))
            continue
        ds = pydicom.dcmread(io.BytesIO(bytes(data)), force=True)
        instances.append(_Instance(str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                                   str(ds.file_meta.TransferSyntaxUID), dataset=ds))
    return instances


def _ae(own_ae: str, datasets, timeout: float, commitments) -> AE:
    ae = AE(ae_title=own_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for pair in {(ds.SOPClassUID, ds.TransferSyntaxUID) for ds in datasets}:
        ae.add_requested_context(*pair)
    if commitments is not None:
        ae.add_requested_context(commit.StorageCommitmentPushModel)
    return ae


#: Seconds a push waits for a further association to be accepted: a node that serves one
#: association at a time leaves it queued, and the first one sends everything instead.
EXTRA_ASSOCIATION_WAIT = 3.0


def send_files(files: list, node: Node, *, own_ae: str, timeout: float = 30.0,
               commitments: Commitments | None = None, commit_timeout: float = 30.0,
               associations: int = 1, spool: str | None = None) -> Outcome:
    """Open associations to ``node``, C-STORE every file and, where the node accepts it,
    request storage commitment of them all (blocking).

    With ``associations`` above 1, up to that many associations send at once, each taking
    the next instance not yet sent, so several instances are in flight: a C-STORE waits
    for its response, and pynetdicom does not negotiate asynchronous operations. The first
    association decides: its refusal is the push's refusal. A further association that the
    node rejects, or does not accept within ``EXTRA_ASSOCIATION_WAIT`` (a node serving one
    at a time), leaves the work to those that opened. Every instance's status is still
    checked: the first failure (in instance order) stops every association and is the
    outcome, and ``delivered`` counts the instances answered 0000; ``instances`` says
    what became of each one.

    The files are written to a temporary folder in ``spool`` (default: the system's) and
    sent from there as they are, as dcmtk's storescu sends files."""
    # pynetdicom's setting for a C-STORE of a file's path: its dataset is read from the
    # file and sent in pieces (a Dataset passed to send_c_store is encoded as before).
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    codes: dict[int, int] = {}          # index -> C-STORE status
    said: dict[str, str] = {}           # SOP Instance UID -> the commitment's word on it
    with tempfile.TemporaryDirectory(prefix="push-", dir=spool) as folder:
        datasets = _spool(files, folder)
        outcome = _send(datasets, node, own_ae, timeout, commitments, commit_timeout,
                        associations, codes, said)
    outcome.instances = [(ds.SOPInstanceUID, codes.get(i), said.get(ds.SOPInstanceUID, ""))
                         for i, ds in enumerate(datasets)]
    return outcome


def _send(datasets, node: Node, own_ae: str, timeout: float, commitments, commit_timeout,
          associations: int, codes: dict, said: dict) -> Outcome:
    ae = _ae(own_ae, datasets, timeout, commitments)
    refused = reach(node.host, node.port, node.tls, timeout)
    if refused is not None:
        transient, reason = refused
        return Outcome(transient, f"the node is {reason}" if transient else reason, 0)
    handlers = ([(evt.EVT_N_EVENT_REPORT, commitments.on_report)]
                if commitments is not None else [])
    assoc, rejected = associate(ae, node.host, node.port, node.ae_title, node.tls, handlers)
    if rejected is not None:
        transient, reason = rejected
        return Outcome(transient, reason, 0)
    if not assoc.is_established:
        return Outcome(True, "the node did not accept an association (unreachable, or it "
                       "aborted)", 0)
    try:
        extra = _ae(own_ae, datasets, timeout, None)
        extra.acse_timeout = EXTRA_ASSOCIATION_WAIT

        def more():
            a, _ = associate(extra, node.host, node.port, node.ae_title, node.tls)
            return a
        failure = _store_all(assoc, more, min(associations, len(datasets)) - 1, datasets,
                             codes)
        if failure is not None:
            return failure
        delivered = len(datasets)
        offered = commitments is not None and any(
            cx.abstract_syntax == commit.StorageCommitmentPushModel
            for cx in assoc.accepted_contexts)
        if not offered:
            if commitments is not None:
                said.update((ds.SOPInstanceUID, "not offered") for ds in datasets)
            return Outcome(None, "", delivered, commit.NOT_OFFERED)
        return _commit(assoc, datasets, node, commitments, delivered, commit_timeout, said)
    finally:
        if assoc.is_established:
            assoc.release()


def _store_all(first, more, extra: int, datasets: list, codes: dict) -> Outcome | None:
    """C-STORE ``datasets`` over the association ``first`` and up to ``extra`` more that
    ``more()`` opens, each taking the next instance; the first failure in instance order,
    or None when every instance was answered 0000. It returns once no instance is left or
    in flight: an association still being opened then finds nothing to send. ``codes``
    gets each answered instance's status by index."""
    n = len(datasets)
    done = threading.Condition()
    queue = iter(range(n))
    inflight = [0]
    stop = threading.Event()
    failures: dict[int, Outcome] = {}       # index of the failed instance -> its outcome
    stored = [0]                            # instances answered 0000

    def send(assoc) -> None:
        while not stop.is_set():
            with done:
                i = next(queue, None)
                if i is None:
                    return
                inflight[0] += 1
            outcome = Outcome(True, f"instance {i + 1} of {n} could not be sent", 0)
            try:
                outcome = _store_one(assoc, datasets[i], i, n, codes)
            finally:
                with done:
                    inflight[0] -= 1
                    if outcome is None:
                        stored[0] += 1
                    else:
                        failures[i] = outcome
                        stop.set()
                    done.notify_all()

    def helper() -> None:
        assoc = more()
        try:
            if assoc.is_established:
                send(assoc)
        finally:
            if assoc.is_established:
                assoc.release()

    for j in range(extra):
        threading.Thread(target=helper, name=f"dicom-push-{j + 1}", daemon=True).start()
    send(first)
    with done:
        done.wait_for(lambda: inflight[0] == 0)
        if not failures:
            return None
        return dataclasses.replace(failures[min(failures)], delivered=stored[0])


def _store_one(assoc, ds, i: int, n: int, codes: dict) -> Outcome | None:
    """C-STORE instance ``i`` of ``n``: None when answered 0000, else why not."""
    try:
        status = assoc.send_c_store(ds.path or ds.dataset)
    except (RuntimeError, OSError) as exc:      # the association went away under it
        log.warning("dicom: a push association ended: %s", type(exc).__name__)
        status = {}
    if "Status" not in status:
        return Outcome(True, f"the association ended before the node answered instance "
                       f"{i + 1} of {n}", 0)
    code = codes[i] = int(status.Status)
    transient = classify_status(code)
    if transient is None:
        return None
    return Outcome(transient, f"instance {i + 1} of {n} answered with status {code:04X}", 0)


def _commit(assoc, datasets, node: Node, commitments: Commitments, delivered: int,
            timeout: float, said: dict) -> Outcome:
    """N-ACTION for every stored instance, then the N-EVENT-REPORT (bounded wait); ``said``
    gets the commitment's word on each instance."""
    uids = [ds.SOPInstanceUID for ds in datasets]
    said.update((u, "request refused") for u in uids)
    uid = commitments.open(node.ae_title, node.host, len(datasets))
    try:
        status, _ = assoc.send_n_action(commit.request_dataset(uid, datasets), 1,
                                        commit.StorageCommitmentPushModel,
                                        commit.StorageCommitmentPushModelInstance)
        # A refused request: delivered (every C-STORE succeeded), not committed.
        if "Status" not in status:
            return Outcome(None, "the association ended before the node answered the "
                           "storage commitment request", delivered, commit.REFUSED)
        code = int(status.Status)
        if code != 0x0000:
            return Outcome(None, "the storage commitment request was answered with status "
                           f"{code:04X}", delivered, commit.REFUSED)
        report = commitments.wait(uid, timeout)
    finally:
        commitments.close(uid)
    said.update((u, "no report" if report is None else report.of(u)) for u in uids)
    if report is None:
        return Outcome(True, f"no storage commitment report within {timeout:g} s",
                       delivered)
    if not report.committed:
        return Outcome(False, report.reason, delivered)
    return Outcome(None, "", delivered, commit.COMMITTED)
