"""The tariff per storage tier and the per-examination data fee: the invoice's lines from
hand-checked quantities, the ledger's gigabyte-days per tier over a real catalog, and the
examinations fetched counted once each."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.proto.v1 import jobs_pb2
from medcompute.server.api import billing as billing_api
from medcompute.server.billing.invoices import invoice
from medcompute.server.billing.service import BillingService
from medcompute.server.billing.tariff import TariffError, parse_tariff
from medcompute.server.storage import image_tiers
from medcompute.server.storage import images as image_catalog
from medcompute.server.storage.fetches import FetchLog, examination_of
from medcompute.server.storage.images import BlobRef, ImageCatalog, ImageRecord
from medcompute.server.storage.keys import Principal

NOV = 1_793_491_200.0          # 2026-11-01 00:00 UTC
DAY = 86400.0
BASE = """
name = "tiers"
currency = "EUR"

[prices]
job = 0
image = 0
megabyte = 0
cpu_second = 0
gpu_second = 0
gigabyte_month = 0.50
"""
TIERED = parse_tariff(BASE + "gigabyte_month_cold = 0.10\nexamination_fetched = 0.05\n")
FLAT = parse_tariff(BASE)


def _lines(sub):
    return {line["item"]: (line["quantity"], line["unit_price"], line["amount"])
            for line in sub["lines"]}


def test_tiers_and_the_data_fee_are_priced_apart():
    got = invoice("2026-11", {}, {"alice": 30.0}, TIERED, cold_gigabyte_days={"alice": 12.0},
                  examinations={"alice": 3, "bob": 1})
    alice, bob = got["subscribers"]
    # hot 18 GB-days / 30 = 0.6 x 0.50 = 0.30; cold 12 / 30 = 0.4 x 0.10 = 0.04;
    # 3 examinations x 0.05 = 0.15; total 0.49
    lines = _lines(alice)
    assert lines["gigabyte_month"] == (pytest.approx(0.6), "0.50", "0.30")
    assert lines["gigabyte_month_cold"] == (pytest.approx(0.4), "0.10", "0.04")
    assert lines["examination_fetched"] == (3.0, "0.05", "0.15")
    assert alice["total"] == "0.49" and alice["cold_gigabyte_days"] == 12.0
    assert alice["examinations_fetched"] == 3
    assert bob["total"] == "0.05" and got["total"] == "0.54"
    assert [line["item"] for line in alice["lines"]][-2:] == ["gigabyte_month_cold",
                                                              "examination_fetched"]
    jobs_pb2.Invoice(**got)          # the message's shape


def test_without_the_optional_prices_every_tier_is_one_line():
    got = invoice("2026-11", {}, {"alice": 30.0}, FLAT, cold_gigabyte_days={"alice": 12.0},
                  examinations={"alice": 3})
    [alice] = got["subscribers"]
    assert _lines(alice)["gigabyte_month"] == (1.0, "0.50", "0.50")
    assert "gigabyte_month_cold" not in _lines(alice)
    assert "examination_fetched" not in _lines(alice)
    with pytest.raises(TariffError, match="prices.gigabyte_month_cold"):
        parse_tariff(BASE + "gigabyte_month_cold = -1\n")
    with pytest.raises(TariffError, match="prices.gigabyte_month_warm"):
        parse_tariff(BASE + "gigabyte_month_warm = 1\n")


def test_invoice_from_the_ledger_per_tier_and_the_fetches(tmp_path):
    images = ImageCatalog(tmp_path)
    try:
        blob = BlobRef("voxels", "d" * 64, 10 ** 9)
        image = ImageRecord(id="im1", owner="alice", identity="im1", kind="original",
                            shape=(1,), dtype="<u1", size=1, crc32=0, created_at=NOV,
                            blobs=(blob,))
        images.db.transaction(image_catalog.add, image, lambda: None)
        # 10 days hot, 20 cold
        assert images.db.transaction(image_tiers.switch_tier, "d" * 64, "cold", NOV + 10 * DAY)
        days = images.gigabyte_days("alice", NOV, NOV + 30 * DAY)
        cold = images.db.run(image_tiers.gigabyte_days, "alice", NOV, NOV + 30 * DAY, None,
                            "cold")
        assert days == {"alice": pytest.approx(30.0)} and cold == {"alice": pytest.approx(20.0)}
    finally:
        images.close()

    async def fetch():
        log = FetchLog(tmp_path)
        try:
            study = examination_of("alice", "im1", "1.2.3")
            for at, image_id, exam in ((NOV + DAY, "im1", study), (NOV + 2 * DAY, "im2", study),
                                       (NOV + 3 * DAY, "im3", examination_of("alice", "im3", "")),
                                       (NOV + 31 * DAY, "im4", "december")):
                await log.add("alice", image_id, exam, at=at)
            assert await log.examinations(None, NOV, NOV + 30 * DAY) == {"alice": 2}
        finally:
            log.close()
    asyncio.run(fetch())

    service = BillingService(tmp_path, TIERED)
    try:
        got = asyncio.run(billing_api.get_invoice(
            service, jobs_pb2.GetInvoiceRequest(month="2026-11"),
            Principal("alice", frozenset({"store"}))))
    finally:
        service.close()
    [alice] = got.subscribers
    lines = {line.item: line.amount for line in alice.lines}
    # hot 10 GB-days / 30 x 0.50 = 0.17; cold 20 / 30 x 0.10 = 0.07; 2 x 0.05 = 0.10
    assert (lines["gigabyte_month"], lines["gigabyte_month_cold"],
            lines["examination_fetched"]) == ("0.17", "0.07", "0.10")
    assert alice.total == "0.34" and alice.examinations_fetched == 2
    assert alice.cold_gigabyte_days == pytest.approx(20.0)
