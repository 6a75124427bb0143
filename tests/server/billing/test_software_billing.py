"""Software packages on the invoice: one software_use line per version used (its fee plus
the tariff's charge per use), one software_download line per version downloaded, worked
out by hand; the tariff's software prices; the CSV naming the version."""

from __future__ import annotations

from decimal import Decimal

import pytest

from medcompute.server.billing.invoices import invoice, to_csv
from medcompute.server.billing.tariff import TariffError, parse_tariff

pytestmark = pytest.mark.timeout(60)

NOV = 1_793_491_200.0          # 2026-11-01 00:00 UTC
BASE = """
name = "hand-checked"
currency = "EUR"
decimals = 2
[prices]
job = 0
image = 0
megabyte = 0
cpu_second = 0
gpu_second = 0
gigabyte_month = 0
"""


def event(kind, version="1.0", fee=0.25, name="sharpen"):
    return {"name": name, "version": version, "subscriber": "st-mary", "kind": kind,
            "fee": fee, "job_id": "", "at": NOV + 10}


def test_the_tariff_prices_software_uses_and_downloads_apart_from_the_per_subscriber_items():
    t = parse_tariff(BASE + "software_use = 0.05\nsoftware_download = 1.5\n")
    assert t.price("software_use") == Decimal("0.05")
    assert t.price_or_zero("software_download") == Decimal("1.5")
    assert "software_use" not in t.items
    assert parse_tariff(BASE).price_or_zero("software_use") == 0
    with pytest.raises(TariffError, match="prices.software_use"):
        parse_tariff(BASE + "software_use = -1\n")


def test_package_lines_worked_out_by_hand():
    tariff = parse_tariff(BASE + "software_use = 0.05\nsoftware_download = 1.5\n")
    events = [event("use"), event("use"), event("use", "2.0", 0.5), event("download"),
              event("use"), event("download", "2.0"), event("download")]
    inv = invoice("2026-11", {}, {}, tariff, software={"st-mary": events})
    [sub] = inv["subscribers"]
    lines = [(line["item"], line.get("package"), line["quantity"], line["unit_price"],
              line["amount"]) for line in sub["lines"] if line.get("package")]
    assert lines == [
        ("software_use", "sharpen==1.0", 3.0, "0.30", "0.90"),      # 0.25 fee + 0.05
        ("software_use", "sharpen==2.0", 1.0, "0.55", "0.55"),
        ("software_download", "sharpen==1.0", 2.0, "1.5", "3.00"),
        ("software_download", "sharpen==2.0", 1.0, "1.5", "1.50"),
    ]
    assert sub["total"] == "5.95" and inv["total"] == "5.95"
    assert "software_use sharpen==1.0,3,0.30,0.90" in to_csv(inv)


def test_unpriced_the_uses_still_cost_their_fees_and_downloads_nothing():
    inv = invoice("2026-11", {}, {}, parse_tariff(BASE),
                  software={"st-mary": [event("use"), event("download")]})
    lines = {line["item"]: line for line in inv["subscribers"][0]["lines"]}
    assert lines["software_use"]["amount"] == "0.25"
    assert lines["software_download"]["amount"] == "0.00"


def test_printed_sheets_are_a_line_where_the_tariff_prices_them():
    tariff = parse_tariff(BASE + "printed_sheet = 0.5\n")
    inv = invoice("2026-11", {}, {}, tariff, sheets={"st-mary": 3})
    lines = {line["item"]: line for line in inv["subscribers"][0]["lines"]}
    assert (lines["printed_sheet"]["quantity"], lines["printed_sheet"]["amount"]) == (3, "1.50")
    unpriced = invoice("2026-11", {}, {}, parse_tariff(BASE), sheets={"st-mary": 3})
    assert "printed_sheet" not in {line["item"] for line in unpriced["subscribers"][0]["lines"]}
