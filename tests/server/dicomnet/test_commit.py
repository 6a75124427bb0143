"""Storage commitment: what an N-EVENT-REPORT says, the transactions in flight, and a
catalog whose pushes were written before storage commitment (on a real SQLite file).
The exchange itself with real peers is in tests/integration/test_dicom_push.py."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from pydicom.dataset import Dataset

from medcompute.server.dicomnet.commit import Commitments, read_report, request_dataset
from medcompute.server.dicomnet.push import PROOF, PushBook, proof_of
from medcompute.server.storage.db import FILENAME

pytestmark = pytest.mark.timeout(30)


def _refs(n: int, failure: int | None = None) -> list[Dataset]:
    items = []
    for i in range(n):
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ref.ReferencedSOPInstanceUID = f"1.2.3.{i}"
        if failure is not None:
            ref.FailureReason = failure
        items.append(ref)
    return items


def test_a_report_of_every_instance_is_committed():
    info = Dataset()
    info.TransactionUID = "1.2.3"
    info.ReferencedSOPSequence = _refs(3)
    assert read_report(1, info, 3).committed


def test_a_report_of_fewer_instances_is_not_committed():
    info = Dataset()
    info.ReferencedSOPSequence = _refs(2)
    report = read_report(1, info, 3)
    assert not report.committed
    assert report.reason == "storage commitment reported 2 of 3 instances committed"


def test_failed_instances_are_counted_by_reason():
    info = Dataset()
    info.ReferencedSOPSequence = _refs(1)
    info.FailedSOPSequence = _refs(2, 0x0112) + _refs(1, 0xA7F0)
    report = read_report(2, info, 4)
    assert not report.committed
    assert report.reason == ("storage commitment failed for 3 of 4 instance(s): 2 x 0112 no "
                             "such object instance, 1 x A7F0 failure")


def test_the_report_says_what_became_of_each_instance():
    info = Dataset()
    info.ReferencedSOPSequence = _refs(2)
    failed = _refs(3, 0x0112)[2:] + _refs(4, 0xA7F0)[3:]
    info.FailedSOPSequence = failed
    report = read_report(2, info, 5)
    assert report.instances == {"1.2.3.0": "committed", "1.2.3.1": "committed",
                                "1.2.3.2": "failed: 0112 no such object instance",
                                "1.2.3.3": "failed: A7F0 failure"}
    assert report.of("1.2.3.4") == "not reported"
    every = Dataset()
    every.ReferencedSOPSequence = _refs(2)
    assert read_report(1, every, 2).instances == {"1.2.3.0": "committed",
                                                  "1.2.3.1": "committed"}


def test_the_request_references_every_instance():
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4"
    info = request_dataset("1.2.9", [ds])
    assert info.TransactionUID == "1.2.9"
    (ref,) = info.ReferencedSOPSequence
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (
        "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4")


class _FakeReportEvent:
    """A fake of the two attributes of a pynetdicom N-EVENT-REPORT event the handler reads
    (the exchange with a real peer is in the integration test)."""

    def __init__(self, uid: str, event_type: int, refs: int):
        self.event_information = Dataset()
        self.event_information.TransactionUID = uid
        self.event_information.ReferencedSOPSequence = _refs(refs)
        self.request = Dataset()
        self.request.EventTypeID = event_type


def test_only_a_transaction_in_flight_is_reported_and_its_node_may_call_in():
    book = Commitments()
    uid = book.open("PACS", "pacs.local", 2)
    assert book.callers("PACS") == ["pacs.local"] and book.callers("OTHER") == []
    assert book.on_report(_FakeReportEvent("9.9.9", 1, 2)) == (0x0110, None)
    assert book.wait(uid, 0.05) is None                 # nothing yet: bounded wait ends
    assert book.on_report(_FakeReportEvent(uid, 1, 2)) == (0x0000, None)
    assert book.wait(uid, 1).committed
    book.close(uid)
    assert book.callers("PACS") == []
    assert book.wait(uid, 0.01) is None


def test_pushes_written_before_storage_commitment_say_not_requested(tmp_path):
    db = sqlite3.connect(tmp_path / FILENAME)
    db.executescript("""
        CREATE TABLE dicom_push (push_id TEXT PRIMARY KEY, job_id TEXT NOT NULL,
            sender TEXT NOT NULL, recipient TEXT NOT NULL, node TEXT NOT NULL,
            state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
            attempts INTEGER NOT NULL DEFAULT 0, delivered INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL DEFAULT 0, created_at REAL NOT NULL,
            updated_at REAL NOT NULL, UNIQUE (job_id, recipient, node));
        INSERT INTO dicom_push VALUES ('p1', 'j1', 'a', 'b', 'n', 'delivered', '', 1, 5, 0,
                                       1, 1);
    """)
    db.commit()
    db.close()
    book = PushBook(tmp_path)
    try:
        (row,) = asyncio.run(book.pushes("a"))
        assert proof_of(row) == PROOF and not row.committed
    finally:
        book.close()
