"""Invoices checked against amounts worked out by hand, month bounds, and the CSV export."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.proto.v1 import jobs_pb2
from medcompute.server.api import billing as billing_api
from medcompute.server.billing import service as billing_service
from medcompute.server.billing.invoices import invoice, month_bounds, to_csv
from medcompute.server.billing.service import BillingService, StorageUsage, Usage
from medcompute.server.billing.tariff import parse_tariff
from medcompute.server.errors import InvalidArgument, PermissionDenied
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.storage import images as image_table
from medcompute.server.storage.images import BlobRef, ImageCatalog, ImageRecord
from medcompute.server.storage.keys import Principal
from tests.usage_helpers import finish_usage, record

pytestmark = pytest.mark.timeout(60)

NOV = 1_793_491_200.0          # 2026-11-01 00:00 UTC
DAY = 86_400.0

TARIFF = parse_tariff("""
name = "hand-checked"
currency = "EUR"
decimals = 2
[prices]
job = 0.05
image = 0.01
megabyte = 0.10
cpu_second = 0.002
gpu_second = 0.01
gigabyte_month = 0.50
""")


def _lines(sub: dict) -> dict[str, tuple[float, str, str]]:
    return {line["item"]: (line["quantity"], line["unit_price"], line["amount"])
            for line in sub["lines"]}


def test_month_bounds_in_utc():
    assert month_bounds("2026-11") == (NOV, NOV + 30 * 86400)
    assert month_bounds("2026-12") == (NOV + 30 * 86400, NOV + 61 * 86400)   # into 2027
    start, end = month_bounds("2024-02")
    assert end - start == 29 * 86400                                          # a leap year


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "November", "", "26-11",
                                  "2026-11-01", "1969-12"])
def test_a_bad_month_is_refused_naming_the_field(text):
    with pytest.raises(InvalidArgument) as caught:
        month_bounds(text)
    assert caught.value.field == "month"
    assert "YYYY-MM" in caught.value.message


def test_an_invoice_worked_out_by_hand():
    alice = [
        record("a1", images=1, bytes_in=2_000_000, compute=5.0, finished_at=NOV + 10),
        record("a2", images=1, bytes_in=3_500_000, compute=7.5, state="FAILED",
               finished_at=NOV + 20),                       # the caller's error: charged
        record("a3", images=0, bytes_in=0, compute=0.0, state="CANCELLED", backend="",
               device="", finished_at=NOV + 30),            # cancelled: the job is charged
        record("a4", images=1, bytes_in=9_000_000, compute=3.0, state="FAILED",
               platform_fault=True, finished_at=NOV + 40),  # the platform's fault: free
    ]
    bob = [record("b1", subscriber="bob", images=1, bytes_in=1_000_000, backend="cupy",
                  device="NVIDIA H200", compute=4.0, gpu=4.0, finished_at=NOV + 50)]
    got = invoice("2026-11", {"bob": bob, "alice": alice}, {"alice": 30.0, "bob": 45.0},
                  TARIFF)

    # alice, November 2026 (30 days), a4 left out:
    #   job             3 billable jobs          x 0.05  = 0.15
    #   image           1 + 1 + 0 = 2 images     x 0.01  = 0.02
    #   megabyte        (2.0 + 3.5 + 0) MB = 5.5 x 0.10  = 0.55
    #   cpu_second      5.0 + 7.5 + 0 = 12.5 s   x 0.002 = 0.025 -> 0.03 (half-up)
    #   gpu_second      0                        x 0.01  = 0.00
    #   gigabyte_month  30 GB-days / 30 = 1      x 0.50  = 0.50
    #   total           0.15 + 0.02 + 0.55 + 0.03 + 0.00 + 0.50 = 1.25
    # bob:
    #   job 1 x 0.05 = 0.05; image 1 x 0.01 = 0.01; megabyte 1.0 x 0.10 = 0.10;
    #   cpu_second 0 (a GPU job) = 0.00; gpu_second 4.0 x 0.01 = 0.04;
    #   gigabyte_month 45 / 30 = 1.5 x 0.50 = 0.75; total 0.95
    # invoice total 1.25 + 0.95 = 2.20
    assert (got["month"], got["currency"], got["tariff"]) == ("2026-11", "EUR", "hand-checked")
    assert (got["period_start"], got["period_end"]) == (NOV, NOV + 30 * 86400)
    a, b = got["subscribers"]
    assert (a["subscriber"], b["subscriber"]) == ("alice", "bob")      # sorted
    assert _lines(a) == {
        "job": (3.0, "0.05", "0.15"),
        "image": (2.0, "0.01", "0.02"),
        "megabyte": (5.5, "0.10", "0.55"),
        "cpu_second": (12.5, "0.002", "0.03"),
        "gpu_second": (0.0, "0.01", "0.00"),
        "gigabyte_month": (1.0, "0.50", "0.50"),
    }
    assert a["total"] == "1.25"
    assert a["excluded_platform_failures"] == 1
    assert a["gigabyte_days"] == 30.0
    # The usage part reports every job, the free one too.
    assert a["usage"]["jobs"] == 4 and a["usage"]["billable_jobs"] == 3
    assert a["usage"]["platform_failures"] == 1 and a["usage"]["cpu_seconds"] == 15.5
    assert "gpu_seconds" not in a["usage"]
    assert _lines(b) == {
        "job": (1.0, "0.05", "0.05"),
        "image": (1.0, "0.01", "0.01"),
        "megabyte": (1.0, "0.10", "0.10"),
        "cpu_second": (0.0, "0.002", "0.00"),
        "gpu_second": (4.0, "0.01", "0.04"),
        "gigabyte_month": (1.5, "0.50", "0.75"),
    }
    assert b["total"] == "0.95" and b["excluded_platform_failures"] == 0
    assert b["usage"]["gpu_seconds"] == 4.0
    assert got["total"] == "2.20"
    assert all(line["subscriber"] == "alice" for line in a["lines"])
    # It is the Invoice message's shape.
    message = jobs_pb2.Invoice(**got)
    assert message.subscribers[1].lines[4].amount == "0.04"
    assert not message.subscribers[0].usage.HasField("gpu_seconds")


def test_the_total_is_the_sum_of_rounded_line_amounts():
    tariff = parse_tariff("""
name = "halves"
currency = "EUR"
[prices]
job = 0.005
image = 0.005
megabyte = 0.005
cpu_second = 0
gpu_second = 0
gigabyte_month = 0
""")
    got = invoice("2026-11", {"c": [record("c1", images=1, bytes_in=1_000_000,
                                           finished_at=NOV)]}, {}, tariff)
    [sub] = got["subscribers"]
    # job, image and megabyte: 1 x 0.005 = 0.005 -> 0.01 each (half-up, not to even);
    # the total is 0.01 + 0.01 + 0.01 = 0.03, not round(0.015) = 0.02.
    assert [line["amount"] for line in sub["lines"]] == ["0.01", "0.01", "0.01", "0.00",
                                                         "0.00", "0.00"]
    assert sub["total"] == "0.03" and got["total"] == "0.03"


def test_quantities_are_exact_decimals_of_the_recorded_floats():
    tariff = parse_tariff("""
name = "seconds"
currency = "EUR"
decimals = 4
[prices]
job = 0
image = 0
megabyte = 0
cpu_second = 0.5
gpu_second = 0
gigabyte_month = 0
""")
    records = [record(f"s{i}", compute=0.1, finished_at=NOV) for i in range(3)]
    [sub] = invoice("2026-11", {"s": records}, {}, tariff)["subscribers"]
    # 0.1 + 0.1 + 0.1 = 0.3 exactly (as floats it would be 0.30000000000000004);
    # 0.3 x 0.5 = 0.15 -> 0.1500
    assert _lines(sub)["cpu_second"] == (0.3, "0.5", "0.1500")


def test_storage_only_subscriber_and_a_february():
    # February 2024 has 29 days: 29 GB-days are one GB-month, 0.50.
    got = invoice("2024-02", {}, {"dora": 29.0}, TARIFF)
    [sub] = got["subscribers"]
    assert _lines(sub)["gigabyte_month"] == (1.0, "0.50", "0.50")
    assert _lines(sub)["job"] == (0.0, "0.05", "0.00")
    assert sub["total"] == "0.50" and got["total"] == "0.50"
    assert sub["usage"]["jobs"] == 0


def test_no_decimals():
    tariff = parse_tariff("""
name = "yen"
currency = "JPY"
decimals = 0
[prices]
job = 5
image = 0
megabyte = 0
cpu_second = 0.5
gpu_second = 0
gigabyte_month = 0
""")
    records = [record("y1", compute=3.0, finished_at=NOV)]
    [sub] = invoice("2026-11", {"y": records}, {}, tariff)["subscribers"]
    # job 1 x 5 = 5; cpu_second 3.0 x 0.5 = 1.5 -> 2 (half-up); total 7
    assert _lines(sub)["cpu_second"][2] == "2" and sub["total"] == "7"


def test_csv_export():
    alice = [record("a1", images=1, bytes_in=2_000_000, compute=5.0, finished_at=NOV),
             record("a2", platform_fault=True, state="FAILED", finished_at=NOV)]
    got = invoice("2026-11", {"alice": alice}, {"alice": 15.0}, TARIFF)
    # job 1 x 0.05 = 0.05; image 1 x 0.01 = 0.01; megabyte 2 x 0.10 = 0.20;
    # cpu_second 5 x 0.002 = 0.01; gpu 0; gigabyte_month 15 / 30 = 0.5 x 0.50 = 0.25
    # total 0.52
    assert to_csv(got) == (
        "month,currency,subscriber,item,quantity,unit_price,amount\n"
        "2026-11,EUR,alice,job,1,0.05,0.05\n"
        "2026-11,EUR,alice,image,1,0.01,0.01\n"
        "2026-11,EUR,alice,megabyte,2,0.10,0.20\n"
        "2026-11,EUR,alice,cpu_second,5,0.002,0.01\n"
        "2026-11,EUR,alice,gpu_second,0,0.01,0.00\n"
        "2026-11,EUR,alice,gigabyte_month,0.5,0.50,0.25\n"
        "2026-11,EUR,alice,TOTAL,,,0.52\n"
        "2026-11,EUR,,TOTAL,,,0.52\n")


def test_an_empty_invoice():
    got = invoice("2026-11", {}, {}, TARIFF)
    assert got["subscribers"] == [] and got["total"] == "0.00"
    assert to_csv(got).splitlines()[-1] == "2026-11,EUR,,TOTAL,,,0.00"


# -- the service: who may see what, over a real data directory -------------------------------

ALICE = Principal("alice", frozenset({"process", "store"}), "k1")
ADMIN = Principal("root", frozenset({"admin"}), "k0")


@pytest.fixture
def data_dir(tmp_path):
    """alice: two jobs in November 2026 (one a platform failure) and one in December;
    bob: one GPU job in November. Stored: alice 1 GB for the whole of November."""
    catalog = Catalog(tmp_path)
    try:
        for r in (record("a1", images=1, bytes_in=2_000_000, compute=5.0,
                         operations=["gaussian", "edge"], finished_at=NOV + 100),
                  record("a2", state="FAILED", platform_fault=True, finished_at=NOV + DAY),
                  record("a3", finished_at=NOV + 31 * DAY),
                  record("b1", subscriber="bob", backend="cupy", device="NVIDIA H200",
                         compute=4.0, gpu=4.0, energy=100.0, bytes_in=1_000_000,
                         finished_at=NOV + 2 * DAY)):
            finish_usage(catalog, r)
    finally:
        catalog.close()
    images = ImageCatalog(tmp_path)
    try:
        blob = BlobRef("voxels", "d" * 64, 10 ** 9)
        image = ImageRecord(id="im1", owner="alice", identity="im1", kind="original",
                            shape=(1,), dtype="<u1", size=1, crc32=0, created_at=NOV,
                            blobs=(blob,))
        images.db.transaction(image_table.add, image, lambda: None)
    finally:
        images.close()
    return tmp_path


def _service(path) -> BillingService:
    return BillingService(path, TARIFF)


def _usage(path, principal, **fields) -> jobs_pb2.GetUsageResponse:
    service = _service(path)
    try:
        return asyncio.run(billing_api.get_usage(service, jobs_pb2.GetUsageRequest(**fields),
                                                 principal))
    finally:
        service.close()


def _invoice(path, principal, **fields) -> jobs_pb2.Invoice:
    service = _service(path)
    try:
        return asyncio.run(billing_api.get_invoice(service, jobs_pb2.GetInvoiceRequest(**fields),
                                                   principal))
    finally:
        service.close()


@pytest.mark.parametrize(("fields", "field"), [
    ({"subscriber": "bob"}, "subscriber"),
    ({"all_subscribers": True}, "all_subscribers"),
])
def test_a_subscriber_sees_only_its_own_usage(data_dir, fields, field):
    for call in (_usage, _invoice):
        extra = {"month": "2026-11"} if call is _invoice else {}
        with pytest.raises(PermissionDenied) as caught:
            call(data_dir, ALICE, **fields, **extra)
        assert caught.value.field == field
        assert "admin" in caught.value.message


def test_own_usage_grouped_by_operation_with_records_and_storage(data_dir):
    reply = _usage(data_dir, ALICE, since=NOV, until=NOV + 30 * DAY,
                   group_by=jobs_pb2.USAGE_GROUPING_OPERATION, include_records=True)
    assert reply == _usage(data_dir, ALICE, subscriber="alice", since=NOV,
                           until=NOV + 30 * DAY, group_by=jobs_pb2.USAGE_GROUPING_OPERATION,
                           include_records=True)                  # naming yourself is fine
    assert (reply.since, reply.until) == (NOV, NOV + 30 * DAY)
    t = reply.totals
    assert (t.jobs, t.billable_jobs, t.platform_failures, t.failed_jobs) == (2, 1, 1, 1)
    assert t.cpu_seconds == 6.0 and not t.HasField("gpu_seconds")
    assert [(g.key, g.totals.jobs) for g in reply.groups] == [("edge", 1), ("gaussian", 2)]
    assert [r.job_id for r in reply.records] == ["a1", "a2"]
    assert not reply.records[0].HasField("gpu_seconds")
    [storage] = reply.storage
    assert storage.subscriber == "alice" and storage.bytes_now == 10 ** 9
    assert storage.gigabyte_days == pytest.approx(30.0, rel=1e-12)   # all of November


def test_an_admin_sees_everyone_by_subscriber(data_dir, monkeypatch):
    monkeypatch.setattr(billing_service, "MAX_RECORDS", 2)
    reply = _usage(data_dir, ADMIN, all_subscribers=True,
                   group_by=jobs_pb2.USAGE_GROUPING_SUBSCRIBER,
                   include_records=True)
    assert reply.totals.jobs == 4
    assert reply.totals.gpu_seconds == 4.0 and reply.totals.energy_joules == 100.0
    assert [(g.key, g.totals.jobs) for g in reply.groups] == [("alice", 3), ("bob", 1)]
    assert len(reply.records) == 2                                     # at most MAX_RECORDS
    assert [s.subscriber for s in reply.storage] == ["alice", "bob"]
    assert reply.storage[1].bytes_now == 0 and reply.storage[1].gigabyte_days == 0
    bob = _usage(data_dir, ADMIN, subscriber="bob", group_by=jobs_pb2.USAGE_GROUPING_DEVICE)
    assert [(g.key, g.totals.gpu_seconds) for g in bob.groups] == [("NVIDIA H200", 4.0)]


def test_bad_periods_are_refused(data_dir):
    for fields, field in (({"since": NOV, "until": NOV - 1}, "until"),
                          ({"since": -1.0}, "since"),
                          ({"until": float("nan")}, "until"),
                          ({"group_by": 99}, "group_by")):
        with pytest.raises(InvalidArgument) as caught:
            _usage(data_dir, ALICE, **fields)
        assert caught.value.field == field
    with pytest.raises(InvalidArgument) as caught:
        _usage(data_dir, ADMIN, subscriber="bob", all_subscribers=True)
    assert caught.value.field == "all_subscribers"
    with pytest.raises(InvalidArgument) as caught:
        _invoice(data_dir, ALICE, month="2026-13")
    assert caught.value.field == "month"


def test_the_service_takes_and_returns_plain_values(data_dir):
    service = _service(data_dir)
    try:
        report = asyncio.run(service.usage(ALICE, since=NOV, until=NOV + 30 * DAY,
                                           group_by="operation", include_records=True))
        bill = asyncio.run(service.invoice(ALICE, "2026-11"))
        with pytest.raises(InvalidArgument) as caught:
            asyncio.run(service.usage(ALICE, group_by="week"))
    finally:
        service.close()
    assert isinstance(report, Usage)
    assert (report.totals["jobs"], report.totals["deliveries"]) == (2, 0)
    assert [(key, t["jobs"]) for key, t in report.groups] == [("edge", 1), ("gaussian", 2)]
    assert [r["job_id"] for r in report.records] == ["a1", "a2"]
    assert report.storage == [StorageUsage("alice", pytest.approx(30.0), 10 ** 9)]
    assert bill["total"] == "0.77" and bill["subscribers"][0]["subscriber"] == "alice"
    assert caught.value.field == "group_by" and "operation" in caught.value.message


def test_invoices_of_one_subscriber_and_of_everyone(data_dir):
    mine = _invoice(data_dir, ALICE, month="2026-11")
    # alice, November: a1 only (a2 is the platform's fault, a3 is December):
    #   job 1 x 0.05 = 0.05; image 1 x 0.01 = 0.01; megabyte 2 x 0.10 = 0.20;
    #   cpu_second 5 x 0.002 = 0.01; gpu_second 0; gigabyte_month 30 / 30 x 0.50 = 0.50
    #   total 0.77
    [alice] = mine.subscribers
    assert [(line.item, line.amount) for line in alice.lines] == [
        ("job", "0.05"), ("image", "0.01"), ("megabyte", "0.20"), ("cpu_second", "0.01"),
        ("gpu_second", "0.00"), ("gigabyte_month", "0.50")]
    assert alice.total == "0.77" and mine.total == "0.77"
    assert alice.excluded_platform_failures == 1 and alice.usage.jobs == 2
    assert (mine.month, mine.currency, mine.tariff) == ("2026-11", "EUR", "hand-checked")
    assert (mine.period_start, mine.period_end) == (NOV, NOV + 30 * DAY)

    everyone = _invoice(data_dir, ADMIN, month="2026-11", all_subscribers=True)
    # bob: job 0.05; image 0.01; megabyte 1 x 0.10 = 0.10; gpu_second 4 x 0.01 = 0.04;
    # total 0.20; the invoice 0.77 + 0.20 = 0.97
    assert [s.subscriber for s in everyone.subscribers] == ["alice", "bob"]
    assert everyone.subscribers[1].total == "0.20" and everyone.total == "0.97"

    carol = _invoice(data_dir, ADMIN, month="2026-11", subscriber="carol")
    assert [s.subscriber for s in carol.subscribers] == ["carol"] and carol.total == "0.00"


def test_the_last_month_datetime_can_start_has_bounds():
    start, end = month_bounds("9999-12")
    assert end - start == 31 * 86400
    assert month_bounds("2026-12")[1] == month_bounds("2027-01")[0]
