"""Tests of medcompute.server.storage.deliveries: the delivered pushes billing counts,
read from the push table without the DICOM network code (real SQLite)."""

from __future__ import annotations

import asyncio
import time

import pytest

from medcompute.server.storage.db import Database
from medcompute.server.storage.deliveries import DeliveryLog

pytestmark = pytest.mark.timeout(30)


def _push(path, push_id: str, sender: str, state: str, at: float) -> None:
    db = Database(path)
    try:
        db.run(lambda tx: tx.execute(
            "INSERT INTO dicom_push (push_id, job_id, sender, recipient, node, state, "
            "created_at, updated_at) VALUES (?, ?, ?, 'r', 'n', ?, ?, ?)",
            (push_id, push_id, sender, state, at, at)))
    finally:
        db.close()


def test_a_fresh_data_directory_has_no_deliveries(catalog_at):
    log = DeliveryLog(catalog_at)        # creates the push table when it is missing
    try:
        assert asyncio.run(log.delivered_counts(None, 0, time.time())) == {}
        assert asyncio.run(log.delivered_times("a", 0, time.time())) == []
    finally:
        log.close()


def test_only_delivered_pushes_count_by_sender_and_time(catalog_at):
    log = DeliveryLog(catalog_at)
    try:
        _push(catalog_at, "p1", "a", "delivered", 100.0)
        _push(catalog_at, "p2", "a", "failed", 110.0)
        _push(catalog_at, "p3", "b", "delivered", 120.0)
        _push(catalog_at, "p4", "a", "delivered", 200.0)
        assert asyncio.run(log.delivered_counts(None, 0, 150)) == {"a": 1, "b": 1}
        assert asyncio.run(log.delivered_counts("a", 0, 300)) == {"a": 2}
        assert asyncio.run(log.delivered_times(None, 100, 200)) == [("a", 100.0), ("b", 120.0)]
    finally:
        log.close()


def test_the_table_functions_count_only_delivered_pushes_in_the_window(catalog_at):
    from medcompute.server.storage import deliveries
    from medcompute.server.storage.db import Database

    db = Database(catalog_at)

    def push(tx, push_id, sender, state, at):
        tx.execute("INSERT INTO dicom_push (push_id, job_id, sender, recipient, node, state,"
                   " created_at, updated_at) VALUES (?, 'j', ?, 'r', ?, ?, ?, ?)",
                   (push_id, sender, push_id, state, at, at))
    try:
        db.transaction(push, "p1", "a", "delivered", 10.0)
        db.transaction(push, "p2", "a", "delivered", 20.0)
        db.transaction(push, "p3", "b", "failed", 15.0)
        db.transaction(push, "p4", "b", "delivered", 30.0)
        assert db.run(deliveries.delivered_counts, None, 0.0, 25.0) == {"a": 2}
        assert db.run(deliveries.delivered_counts, "b", 0.0, 100.0) == {"b": 1}
        assert db.run(deliveries.delivered_times, None, 15.0, 100.0) == [("a", 20.0),
                                                                          ("b", 30.0)]
    finally:
        db.close()


def test_each_instance_keeps_the_status_of_the_last_try(catalog_at):
    from medcompute.server.storage import deliveries
    from medcompute.server.storage.deliveries import InstanceStatus

    log = DeliveryLog(catalog_at)       # creates the instance table on an older catalog
    try:
        db = log.db
        # A first try: the node answered the first instance with a warning, then went away.
        db.transaction(deliveries.record_instances, "p1", [
            ("1.2.1", 0xB000, ""), ("1.2.2", None, ""), ("1.2.3", None, "")], 10.0)
        db.transaction(deliveries.record_instances, "p2", [("1.2.9", 0xA700, "")], 11.0)
        # The next try of p1 overwrites each instance (the same UIDs: ON CONFLICT).
        db.transaction(deliveries.record_instances, "p1", [
            ("1.2.1", 0x0000, "committed"), ("1.2.2", 0x0000, "failed: 0112 no such object "
                                              "instance"), ("1.2.3", 0x0000, "committed")],
            20.0)
        found = asyncio.run(log.instance_statuses(["p1", "p2", "p3"]))
        assert found["p1"] == [InstanceStatus("1.2.1", 0, 0, "committed"),
                               InstanceStatus("1.2.2", 1, 0, "failed: 0112 no such object "
                                              "instance"),
                               InstanceStatus("1.2.3", 2, 0, "committed")]
        assert found["p2"] == [InstanceStatus("1.2.9", 0, 0xA700, "")]
        assert found["p3"] == []
        assert found["p2"][0].shown == "A700" and found["p1"][0].shown == "0000"
        assert InstanceStatus("1.2.4", 3, None, "").shown == "not answered"
    finally:
        log.close()
