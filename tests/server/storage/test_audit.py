"""The audit table (storage/audit.py): entries on disk when recorded, listed by filter."""

import asyncio

from medcompute.server.storage.audit import PAGE_MAX, AuditLog
from medcompute.server.storage.db import Database


def _fill(log, rows):
    async def scenario():
        for subscriber, action in rows:
            await log.record(subscriber, action, "obj", "OK", "x" * 600)
    asyncio.run(scenario())


def test_entries_are_listed_in_order_with_filters(catalog_at):
    log = AuditLog(catalog_at)
    try:
        _fill(log, [("a", "Process"), ("b", "Process"), ("a", "Store.Get"), (None, "Process")])
        everything = log.list()
        assert [(e.subscriber, e.action) for e in everything] == [
            ("a", "Process"), ("b", "Process"), ("a", "Store.Get"), ("", "Process")]
        assert all(len(e.detail) == 500 for e in everything)       # details are cut
        assert [e.action for e in log.list(subscriber="a")] == ["Process", "Store.Get"]
        assert [e.subscriber for e in log.list(action="Process")] == ["a", "b", ""]
        after = log.list(after_seq=everything[1].seq)
        assert [e.seq for e in after] == [everything[2].seq, everything[3].seq]
        assert [e.seq for e in log.list(limit=2)] == [everything[0].seq, everything[1].seq]
        assert log.list(since=everything[-1].at + 1) == []
        assert len(log.list(until=everything[-1].at + 1)) == 4
        assert log.list(until=everything[0].at) == []                # until is exclusive
    finally:
        log.close()


def test_a_page_is_capped(catalog_at):
    log = AuditLog(catalog_at)
    try:
        _fill(log, [("a", "Process")] * (PAGE_MAX + 5))
        assert len(log.list(limit=10**9)) == PAGE_MAX
        assert len(log.list(limit=0)) == 100                        # the default page
    finally:
        log.close()


def test_entries_join_another_stores_commits_and_survive_reopening(catalog_at):
    writer = Database(catalog_at)
    log = AuditLog(writer)
    try:
        _fill(log, [("a", "Process"), ("b", "Process")])
        assert writer.commits >= 1 and writer.committed_writes == 2
        assert log.db is writer                  # no connection of its own
    finally:
        log.close()
        assert writer.run(lambda tx: not tx.in_transaction)   # a shared Database stays open
        writer.close()
    reopened = AuditLog(catalog_at)
    try:
        assert [e.subscriber for e in reopened.list()] == ["a", "b"]
    finally:
        reopened.close()


def test_the_table_functions_add_and_list_entries_in_a_transaction(catalog_at):
    from medcompute.server.storage import audit as audit_table

    db = Database(catalog_at)
    try:
        entry = audit_table.entry(None, "Process", None, "OK", "y" * 600, at=5.0)
        assert (entry.subscriber, entry.object_id, len(entry.detail)) == ("", "", 500)
        db.transaction(audit_table.add, entry)
        db.transaction(audit_table.add, audit_table.entry("a", "Store.Get", "i1", "NOT_FOUND"))
        listed = db.run(audit_table.list_entries)
        assert [(e.subscriber, e.action, e.at) for e in listed][0] == ("", "Process", 5.0)
        assert [e.object_id for e in db.run(lambda tx: audit_table.list_entries(
            tx, subscriber="a"))] == ["i1"]
        assert len(db.run(lambda tx: audit_table.list_entries(tx, limit=1))) == 1
        assert AuditLog(db).list() == listed
    finally:
        db.close()


def test_refused_calls_get_a_few_entries_each_and_a_summary_counts_the_rest():
    from medcompute.server.storage.audit import REFUSED_ACTION, RefusedCalls

    counter = RefusedCalls(per_window=3, window=60.0)
    admitted = [counter.admit("10.0.0.1", 1000.0 + i / 10)[0] for i in range(500)]
    assert admitted == [True] * 3 + [False] * 497
    assert counter.admit("10.0.0.2", 1001.0)[0]        # another source has its own count
    assert counter.ends("10.0.0.1") == 1060.0
    assert counter.ends("10.0.0.2") is None            # none of its calls only counted
    assert counter.due(1059.0) == []
    own, summaries = counter.admit("10.0.0.1", 1060.0)  # a new window begins
    assert own
    [summary] = summaries
    assert (summary.action, summary.object_id, summary.outcome) == (
        REFUSED_ACTION, "10.0.0.1", "UNAUTHENTICATED")
    assert summary.detail.startswith("500 refused unauthenticated calls from 10.0.0.1 in "
                                     "the last 60 s")


def test_the_open_windows_are_summarised_when_the_server_stops():
    from medcompute.server.storage.audit import RefusedCalls

    counter = RefusedCalls(per_window=1, window=60.0, max_sources=2)
    for source in ("a", "b", "c", "d"):
        for _ in range(2):
            counter.admit(source, 0.0)
    assert counter.due(10.0) == []
    summaries = counter.due(10.0, every=True)
    # Sources past the tracked number share one count.
    assert sorted((s.object_id, s.detail.split()[0]) for s in summaries) == [
        ("a", "2"), ("b", "2"), ("other sources", "4")]
    assert counter.windows == {}
