"""Usage records summarised: what counts, the groupings, GPU figures only where measured,
and the records read back from a real catalog file."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.server.jobs.catalog import Catalog
from medcompute.server.storage.usage import UsageBook, billable, cpu_seconds, summarize, totals
from tests.usage_helpers import DAY1, DAY2, finish_usage, record

pytestmark = pytest.mark.timeout(60)


def test_every_job_is_billable_but_a_platform_failure():
    assert billable(record("a"))
    assert billable(record("b", state="FAILED"))            # the caller's mistake: charged
    assert billable(record("c", state="CANCELLED"))
    assert not billable(record("d", state="FAILED", platform_fault=True))


def test_cpu_seconds_are_those_of_jobs_on_a_cpu_backend():
    assert cpu_seconds(record("a", compute=3.0)) == 3.0
    assert cpu_seconds(record("b", backend="cupy", device="NVIDIA H200", compute=3.0,
                              gpu=3.0)) == 0.0
    # A GPU backend without a measured GPU time is still not CPU time.
    assert cpu_seconds(record("c", backend="fake-gpu", device="FakeGPU", compute=3.0)) == 0.0


def test_totals_without_any_gpu_measurement_have_no_gpu_fields():
    t = totals([record("a", compute=1.5), record("b", compute=2.5, state="FAILED",
                                                   platform_fault=True, fallback=True)])
    assert t == {"jobs": 2, "billable_jobs": 1, "failed_jobs": 1, "platform_failures": 1,
                 "images": 2, "voxels": 2000, "bytes_in": 4000, "bytes_out": 8000,
                 "cpu_seconds": 4.0, "fallbacks": 1, "wall_seconds": 4.0,
                 "queue_seconds": 1.0}
    assert "gpu_seconds" not in t and "energy_joules" not in t


def test_totals_with_a_gpu_measurement():
    t = totals([record("a", compute=1.0),
                record("b", backend="cupy", device="NVIDIA H200", compute=0.25, gpu=0.25,
                       energy=30.0)])
    assert t["cpu_seconds"] == 1.0
    assert t["gpu_seconds"] == 0.25
    assert t["energy_joules"] == 30.0


def test_summarize_by_day_in_utc():
    records = [record("a", finished_at=DAY1 + 10), record("b", finished_at=DAY2 - 1),
               record("c", finished_at=DAY2)]
    total, groups = summarize(records, "day")
    assert total["jobs"] == 3
    assert [(k, g["jobs"]) for k, g in groups] == [("2026-11-01", 2), ("2026-11-02", 1)]


def test_summarize_by_operation_counts_a_job_once_per_distinct_operation():
    records = [record("a", operations=["gaussian", "edge", "gaussian"], compute=2.0),
               record("b", operations=["edge"], compute=1.0)]
    total, groups = summarize(records, "operation")
    assert total["jobs"] == 2 and total["cpu_seconds"] == 3.0
    assert {k: (g["jobs"], g["cpu_seconds"]) for k, g in groups} == {
        "edge": (2, 3.0), "gaussian": (1, 2.0)}


def test_summarize_by_device_keeps_gpu_figures_to_the_groups_that_measured_them():
    records = [record("a", device="cpu"),
               record("b", backend="cupy", device="NVIDIA H200", gpu=0.5, energy=12.0),
               record("c", backend="cupy", device="NVIDIA H200", gpu=0.25)]
    total, groups = summarize(records, "device")
    assert total["gpu_seconds"] == 0.75 and total["energy_joules"] == 12.0
    by_key = dict(groups)
    assert "gpu_seconds" not in by_key["cpu"] and "energy_joules" not in by_key["cpu"]
    assert by_key["NVIDIA H200"]["gpu_seconds"] == 0.75
    assert by_key["NVIDIA H200"]["cpu_seconds"] == 0.0


def test_summarize_by_subscriber_and_none():
    records = [record("a", subscriber="bob"), record("b"), record("c", subscriber="bob")]
    _, groups = summarize(records, "subscriber")
    assert [(k, g["jobs"]) for k, g in groups] == [("alice", 1), ("bob", 2)]
    total, groups = summarize(records, "none")
    assert groups == [("", total)]
    assert summarize([], "none") == (totals([]), [])


def test_summarize_refuses_an_unknown_grouping():
    with pytest.raises(ValueError, match="group_by"):
        summarize([], "week")


def test_usage_book_reads_the_catalog_by_subscriber_and_period(catalog_at):
    catalog = Catalog(catalog_at)
    try:
        for r in (record("a", finished_at=DAY1), record("b", finished_at=DAY2),
                  record("c", subscriber="bob", finished_at=DAY1 + 5,
                         backend="cupy", device="NVIDIA H200", gpu=0.5)):
            finish_usage(catalog, r)
    finally:
        catalog.close()
    book = UsageBook(catalog_at)
    try:
        assert [r["job_id"] for r in book.records(None)] == ["a", "c", "b"]
        assert [r["job_id"] for r in book.records("alice")] == ["a", "b"]
        assert [r["job_id"] for r in book.records(None, DAY1, DAY2)] == ["a", "c"]  # [since, until)
        assert [r["job_id"] for r in book.records(None, DAY1 + 1)] == ["c", "b"]
        assert [r["job_id"] for r in book.records(None, 0, DAY1 + 1)] == ["a"]
        assert [r["job_id"] for r in book.records(None, limit=2)] == ["a", "c"]
        [bob] = asyncio.run(book.arecords("bob"))
        assert bob["gpu_seconds"] == 0.5 and "energy_joules" not in bob
        assert book.records("carol") == []
    finally:
        book.close()


def test_usage_book_of_a_data_directory_without_jobs(catalog_at):
    book = UsageBook(catalog_at)
    try:
        assert book.records(None) == []
    finally:
        book.close()


def test_the_table_functions_add_one_record_per_job_and_read_them_back(catalog_at):
    from medcompute.server.storage import usage as usage_table
    from medcompute.server.storage.db import Database

    db = Database(catalog_at)
    try:
        db.transaction(usage_table.add, "j2", "b", 20.0, {"job_id": "j2", "images": 2})
        db.transaction(usage_table.add, "j1", "a", 10.0, {"job_id": "j1", "images": 1})
        db.transaction(usage_table.add, "j1", "a", 30.0, {"job_id": "j1", "images": 9})
        assert db.run(usage_table.for_job, "j1") == [{"job_id": "j1", "images": 1}]
        assert db.run(usage_table.for_job, "nope") == []
        assert [r["job_id"] for r in db.run(usage_table.records, None)] == ["j1", "j2"]
        assert [r["job_id"] for r in db.run(usage_table.records, "b")] == ["j2"]
        assert [r["job_id"] for r in db.run(usage_table.records, None, 15.0)] == ["j2"]
        assert [r["job_id"] for r in db.run(usage_table.records, None, 0.0, 15.0)] == ["j1"]
        assert len(db.run(usage_table.records, None, 0.0, 0.0, 1)) == 1
        assert UsageBook(db).records(None) == db.run(usage_table.records, None)
    finally:
        db.close()
