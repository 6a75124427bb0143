"""Deliveries to DICOM nodes in the tariff and on the invoice: an optional `delivery`
price, counted from the pushes delivered in the month (real SQLite)."""

from __future__ import annotations

import asyncio
import time

import pytest

from medcompute.server.billing.invoices import invoice
from medcompute.server.billing.tariff import TariffError, load_tariff, parse_tariff
from medcompute.server.dicomnet.push import PushBook

pytestmark = pytest.mark.timeout(30)

BASE = """
name = "t"
currency = "EUR"
[prices]
job = 0
image = 0
megabyte = 0
cpu_second = 0
gpu_second = 0
gigabyte_month = 0
"""


def test_delivery_is_an_optional_price():
    assert "delivery" not in parse_tariff(BASE).items
    priced = parse_tariff(BASE + "delivery = 0.25\n")
    assert priced.items[-1] == "delivery" and str(priced.price("delivery")) == "0.25"
    with pytest.raises(TariffError) as err:
        parse_tariff(BASE + "delivery = -1\n")
    assert err.value.key == "prices.delivery"
    assert "delivery" in load_tariff().items


def test_invoice_prices_deliveries():
    tariff = parse_tariff(BASE + "delivery = 0.25\n")
    got = invoice("2026-11", {}, {}, tariff, deliveries={"alice": 3})
    (alice,) = got["subscribers"]
    (line,) = [x for x in alice["lines"] if x["item"] == "delivery"]
    assert (line["quantity"], line["amount"]) == (3.0, "0.75")
    assert got["total"] == "0.75"
    # Without a delivery price there is no delivery line.
    (alice,) = invoice("2026-11", {}, {}, parse_tariff(BASE),
                       deliveries={"alice": 3})["subscribers"]
    assert "delivery" not in {x["item"] for x in alice["lines"]}


def test_delivered_pushes_are_counted_per_sender_and_period(tmp_path):
    book = PushBook(tmp_path)

    async def scenario():
        for job, sender, node in (("j1", "a", "n1"), ("j1", "a", "n2"), ("j2", "b", "n1"),
                                  ("j3", "a", "n1")):
            await book.add_push(job, sender, "r", node)
        rows = {(p.job_id, p.node): p for p in await book.pushes("r")}
        await book.update(rows["j1", "n1"].push_id, "delivered", delivered=5)
        await book.update(rows["j1", "n2"].push_id, "failed", reason="refused")
        await book.update(rows["j2", "n1"].push_id, "delivered", delivered=5)
        now = time.time()
        assert await book.delivered_counts(None, now - 60, now + 60) == {"a": 1, "b": 1}
        assert await book.delivered_counts("a", now - 60, now + 60) == {"a": 1}
        assert await book.delivered_counts(None, now + 60, now + 120) == {}
    try:
        asyncio.run(scenario())
    finally:
        book.close()


def test_get_usage_totals_show_deliveries_per_subscriber_and_day(tmp_path):
    from medcompute.proto.v1 import jobs_pb2
    from medcompute.server.api.billing import get_usage
    from medcompute.server.billing.service import BillingService
    from medcompute.server.storage.keys import Principal
    from medcompute.server.storage.usage import day_of

    pushes = PushBook(tmp_path)
    service = BillingService(tmp_path)
    admin = Principal("ops", frozenset({"admin"}))

    async def scenario():
        for job, sender, node in (("j1", "a", "n1"), ("j1", "a", "n2"), ("j2", "b", "n1"),
                                  ("j3", "a", "n1")):
            await pushes.add_push(job, sender, "r", node)
        rows = {(p.job_id, p.node): p for p in await pushes.pushes("r")}
        for key in (("j1", "n1"), ("j2", "n1"), ("j3", "n1")):
            await pushes.update(rows[key].push_id, "delivered", delivered=5)
        await pushes.update(rows["j1", "n2"].push_id, "failed", reason="refused")
        group = jobs_pb2.USAGE_GROUPING_SUBSCRIBER
        every = await get_usage(service, jobs_pb2.GetUsageRequest(
            all_subscribers=True, group_by=group), admin)
        assert every.totals.deliveries == 3 and every.totals.jobs == 0
        # Subscribers with deliveries only still get their group.
        assert {g.key: g.totals.deliveries for g in every.groups} == {"a": 2, "b": 1}
        mine = await get_usage(service, jobs_pb2.GetUsageRequest(),
                               Principal("b", frozenset()))
        assert mine.totals.deliveries == 1
        days = await get_usage(service, jobs_pb2.GetUsageRequest(
            all_subscribers=True, group_by=jobs_pb2.USAGE_GROUPING_DAY), admin)
        assert [(g.key, g.totals.deliveries) for g in days.groups] == [
            (day_of(time.time()), 3)]
        # No push was delivered before this test's pushes were made.
        earlier = await get_usage(service, jobs_pb2.GetUsageRequest(
            all_subscribers=True, until=rows["j1", "n1"].created_at), admin)
        assert earlier.totals.deliveries == 0
        by_device = await get_usage(service, jobs_pb2.GetUsageRequest(
            all_subscribers=True, group_by=jobs_pb2.USAGE_GROUPING_DEVICE), admin)
        assert by_device.totals.deliveries == 3 and list(by_device.groups) == []
    try:
        asyncio.run(scenario())
    finally:
        pushes.close()
        service.close()


def test_the_service_counts_the_deliveries_it_is_given_and_leaves_them_open(tmp_path):
    from medcompute.server.billing.service import BillingService
    from medcompute.server.storage.keys import Principal

    pushes = PushBook(tmp_path)        # the server's push book is a DeliveryLog
    service = BillingService(tmp_path, deliveries=pushes)

    async def scenario():
        await pushes.add_push("j1", "a", "r", "n1")
        [row] = await pushes.pushes("r")
        await pushes.update(row.push_id, "delivered", delivered=1)
        got = await service.invoice(Principal("a", frozenset()),
                                    time.strftime("%Y-%m", time.gmtime()))
        assert got["subscribers"][0]["usage"]["deliveries"] == 1
    try:
        asyncio.run(scenario())
    finally:
        service.close()
        assert asyncio.run(pushes.delivered_counts(None, 0, time.time() + 60)) == {"a": 1}
        pushes.close()
