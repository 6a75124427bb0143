"""Storage Commitment (Push Model, 1.2.840.10008.1.20.1) after a push's C-STOREs.

Where the destination accepts the Storage Commitment SOP class in association
negotiation, the pusher sends an N-ACTION (Action Type 1) with a new Transaction UID and
the Referenced SOP Sequence of every instance it stored, then waits (bounded) for the
N-EVENT-REPORT: on the same association, or on one the destination opens to the
service's own AE (the storage SCP accepts it from a node with a transaction in flight,
see :meth:`Commitments.callers`). Event type 1 means every instance is committed; event
type 2 carries a Failed SOP Sequence, and the push fails with its reasons.

A destination that offers the SOP class but then refuses the N-ACTION (a failure status,
or an abort: an Orthanc aborts when the calling AE is not one of its DicomModalities)
has answered every C-STORE with success: the instances are there, only the proof of
safe keeping is missing. The push is then delivered, not committed (``REFUSED``, with
the reason), and not sent again: sending every instance again would get the same
refusal. An accepted request whose report does not come in time is different: the
destination agreed to commit, and the try counts as a transient failure.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import StorageCommitmentPushModel, StorageCommitmentPushModelInstance

__all__ = ["Commitments", "Report", "request_dataset", "read_report", "COMMITTED",
           "NOT_OFFERED", "REFUSED", "StorageCommitmentPushModel",
           "StorageCommitmentPushModelInstance"]

COMMITTED = "C-STORE success per instance; storage commitment: committed"
NOT_OFFERED = ("C-STORE success per instance; not committed: the destination does not "
               "offer storage commitment")
REFUSED = ("C-STORE success per instance; not committed: the destination refused the "
           "storage commitment request")

_FAILURE_REASONS = {0x0110: "processing failure", 0x0112: "no such object instance",
                    0x0213: "resource limitation", 0x0122: "referenced SOP class not "
                    "supported", 0x0119: "class-instance conflict", 0x0131: "duplicate "
                    "transaction UID"}


@dataclass
class Report:
    committed: bool
    reason: str = ""
    #: Each reported instance (SOP Instance UID): "committed", or "failed: <code> <name>".
    instances: dict[str, str] = field(default_factory=dict)

    def of(self, uid: str) -> str:
        """What the report says of instance ``uid`` ("not reported" when it is absent)."""
        return self.instances.get(uid, "not reported")


def request_dataset(transaction_uid: str, datasets) -> Dataset:
    """The N-ACTION's Action Information: the transaction and every stored instance."""
    info = Dataset()
    info.TransactionUID = transaction_uid
    refs = []
    for ds in datasets:
        ref = Dataset()
        ref.ReferencedSOPClassUID = ds.SOPClassUID
        ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        refs.append(ref)
    info.ReferencedSOPSequence = refs
    return info


def read_report(event_type: int, info: Dataset | None, expected: int) -> Report:
    """What an N-EVENT-REPORT says about a transaction of ``expected`` instances."""
    failed = list(getattr(info, "FailedSOPSequence", None) or []) if info is not None else []
    referenced = list(getattr(info, "ReferencedSOPSequence", None) or []) if info else []
    instances = {str(getattr(item, "ReferencedSOPInstanceUID", "")): "committed"
                 for item in referenced}
    if event_type == 1 and not failed:
        if len(referenced) < expected:
            return Report(False, f"storage commitment reported {len(referenced)} of "
                          f"{expected} instances committed", instances)
        return Report(True, "", instances)
    why: dict[str, int] = {}
    for item in failed:
        code = int(getattr(item, "FailureReason", 0x0110))
        name = _FAILURE_REASONS.get(code, "failure")
        key = f"{code:04X} {name}"
        why[key] = why.get(key, 0) + 1
        instances[str(getattr(item, "ReferencedSOPInstanceUID", ""))] = f"failed: {key}"
    detail = ", ".join(f"{n} x {k}" for k, n in why.items()) or f"event type {event_type}"
    return Report(False, f"storage commitment failed for {len(failed)} of {expected} "
                  f"instance(s): {detail}", instances)


@dataclass
class _Waiter:
    ae_title: str
    host: str
    expected: int
    done: threading.Event = field(default_factory=threading.Event)
    report: Report | None = None


class Commitments:
    """Transactions in flight, shared by the pusher and the storage SCP (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, _Waiter] = {}

    def open(self, ae_title: str, host: str, expected: int) -> str:
        uid = str(generate_uid())
        with self._lock:
            self._waiting[uid] = _Waiter(ae_title, host, expected)
        return uid

    def close(self, uid: str) -> None:
        with self._lock:
            self._waiting.pop(uid, None)

    def callers(self, ae_title: str) -> list[str]:
        """The registered hosts of the nodes with this AE title that have a transaction
        in flight: they may call in to report."""
        with self._lock:
            return [w.host for w in self._waiting.values() if w.ae_title == ae_title]

    def on_report(self, event) -> tuple[int, None]:
        """EVT_N_EVENT_REPORT handler (either association): 0x0000 for a transaction in
        flight, 0x0110 (processing failure: no such transaction) otherwise."""
        info = event.event_information
        uid = str(getattr(info, "TransactionUID", ""))
        with self._lock:
            waiter = self._waiting.get(uid)
        if waiter is None:
            return 0x0110, None
        waiter.report = read_report(int(event.request.EventTypeID), info, waiter.expected)
        waiter.done.set()
        return 0x0000, None

    def wait(self, uid: str, timeout: float) -> Report | None:
        with self._lock:
            waiter = self._waiting.get(uid)
        if waiter is None or not waiter.done.wait(timeout):
            return None
        return waiter.report
