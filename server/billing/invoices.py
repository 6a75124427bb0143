"""Monthly invoices from usage records, stored gigabyte-days and a tariff.

The rules
---------
- The period is one calendar month in UTC, [first day 00:00, first day of the next
  month 00:00); a job belongs to the month its usage record finished in.
- Jobs failed through the platform's fault are never charged: they are left out of
  every line and counted in ``excluded_platform_failures``. The ``usage`` of a
  subscriber's invoice still reports every job, as GetUsage does.
- Each subscriber gets one line per item of the tariff, zero quantities included:

  ============== ==========================================================
  job            billable jobs
  image          input images of the billable jobs
  megabyte       decoded input bytes (``bytes_in``) of the billable jobs / 10^6
  cpu_second     CPU compute seconds of the billable jobs (usage.cpu_seconds)
  gpu_second     measured GPU seconds of the billable jobs
  gigabyte_month stored gigabyte-days over the month / the days in that month
                 (hot tier only where the tariff prices the cold tier apart)
  gigabyte_month_cold  the cold tier's gigabyte-days / the days (if priced)
  examination_fetched  distinct examinations (studies) fetched (if priced)
  printed_sheet  sheets printed on DICOM printers, copies counted (if priced)
  ============== ==========================================================

- Software packages: one ``software_use`` line per package version the subscriber's
  jobs used (quantity: the uses; unit price: the package's fee per use plus the tariff's
  ``software_use``) and one ``software_download`` line per version it downloaded (unit
  price: the tariff's ``software_download``), each naming the version in ``package``.
- A line's amount is quantity × unit price, computed in exact decimals and rounded
  half-up to the tariff's ``decimals``. A subscriber's total is the sum of its rounded
  line amounts; the invoice total is the sum of the subscribers' totals.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
import re
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal

from medcompute.server.billing.tariff import Tariff
from medcompute.server.errors import InvalidArgument
from medcompute.server.storage.usage import billable, cpu_seconds, totals

__all__ = ["CSV_HEADER", "invoice", "month_bounds", "to_csv"]

CSV_HEADER = ("month", "currency", "subscriber", "item", "quantity", "unit_price", "amount")
_MONTH = re.compile(r"(\d{4})-(\d{2})")


def _month(text: str) -> tuple[int, int]:
    m = _MONTH.fullmatch(text or "")
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1970:
        raise InvalidArgument(f"expected a month as YYYY-MM (UTC), e.g. 2026-11, got {text!r}",
                              "month")
    return int(m.group(1)), int(m.group(2))


def month_bounds(month: str) -> tuple[float, float]:
    """The month ``YYYY-MM`` as unix seconds [start, end), UTC.

    Examples
    --------
    >>> month_bounds("1970-02")
    (2678400.0, 5097600.0)
    """
    year, number = _month(month)
    start = dt.datetime(year, number, 1, tzinfo=dt.timezone.utc).timestamp()
    # Its days counted on, not the next month's first day: December 9999 ends in a year
    # that datetime cannot hold.
    return start, start + calendar.monthrange(year, number)[1] * 86400.0


def _exact(value) -> Decimal:
    """A float as the decimal it prints as (0.1 -> 0.1, not 0.1000000000000000055...)."""
    return Decimal(repr(float(value))) if isinstance(value, float) else Decimal(value)


def _text(value: Decimal) -> str:
    return format(value, "f")


def _quantities(records: list[dict], gigabyte_days: float, days: int, *, cold: float,
                cold_apart: bool, examinations: int, deliveries: int,
                sheets: int = 0) -> dict[str, Decimal]:
    charged = [r for r in records if billable(r)]
    hot = gigabyte_days - cold if cold_apart else gigabyte_days
    gpu = [r["gpu_seconds"] for r in charged if r.get("gpu_seconds") is not None]
    return {
        "job": Decimal(len(charged)),
        "image": Decimal(sum(int(r.get("images", 0)) for r in charged)),
        "megabyte": Decimal(sum(int(r.get("bytes_in", 0)) for r in charged)) / 10 ** 6,
        "cpu_second": sum((_exact(cpu_seconds(r)) for r in charged), Decimal(0)),
        "gpu_second": sum((_exact(s) for s in gpu), Decimal(0)),
        "gigabyte_month": _exact(max(hot, 0.0)) / days,
        "gigabyte_month_cold": _exact(cold) / days,
        "examination_fetched": Decimal(examinations),
        "delivery": Decimal(deliveries),
        "printed_sheet": Decimal(sheets),
    }


def _package_lines(events, tariff: Tariff) -> list[dict]:
    """One software_use line per (version, fee) used, one software_download line per
    version downloaded, in the order of the versions' first events."""
    counts: dict[tuple[str, str, Decimal], int] = {}
    for e in events:
        if e["kind"] == "use":
            key = ("software_use", f"{e['name']}=={e['version']}",
                   _exact(e["fee"]) + tariff.price_or_zero("software_use"))
        else:
            key = ("software_download", f"{e['name']}=={e['version']}",
                   tariff.price_or_zero("software_download"))
        counts[key] = counts.get(key, 0) + 1
    return [{"item": item, "package": package, "quantity": Decimal(n), "unit_price": price}
            for (item, package, price), n in counts.items()]


def invoice(month: str, records_by_subscriber: Mapping[str, list[dict]],
            gigabyte_days: Mapping[str, float], tariff: Tariff, *,
            cold_gigabyte_days: Mapping[str, float] | None = None,
            examinations: Mapping[str, int] | None = None,
            deliveries: Mapping[str, int] | None = None,
            software: Mapping[str, list[dict]] | None = None,
            sheets: Mapping[str, int] | None = None) -> dict:
    """The invoice of ``month`` (YYYY-MM), shaped like the Invoice message.

    Parameters
    ----------
    month : str
        YYYY-MM, UTC.
    records_by_subscriber : mapping of str to list of dict
        Each subscriber's usage records of the month.
    gigabyte_days : mapping of str to float
        Each subscriber's stored gigabyte-days over the month, every tier.
    tariff : Tariff
        The prices.
    cold_gigabyte_days : mapping of str to float, optional
        The part of them on the cold tier.
    examinations : mapping of str to int, optional
        Each subscriber's distinct examinations fetched in the month.
    deliveries : mapping of str to int, optional
        Each subscriber's results delivered to DICOM nodes in the month (a ``delivery``
        line where the tariff prices it).
    sheets : mapping of str to int, optional
        Each subscriber's sheets printed in the month (a ``printed_sheet`` line where the
        tariff prices it).
    software : mapping of str to list of dict, optional
        Each subscriber's uses and downloads of software packages in the month (the
        events of storage/software.py: name, version, kind, fee).

    Returns
    -------
    dict
        month, currency, tariff, period_start, period_end, subscribers (one per
        subscriber of either mapping, sorted) and total; amounts and unit prices are
        decimal strings.
    """
    start, end = month_bounds(month)
    year, number = _month(month)
    days = calendar.monthrange(year, number)[1]
    step = Decimal(1).scaleb(-tariff.decimals)
    subscribers, grand = [], Decimal(0)
    cold_days, fetched = cold_gigabyte_days or {}, examinations or {}
    deliveries = dict(deliveries or {})
    software, sheets = dict(software or {}), dict(sheets or {})
    for name in sorted(set(records_by_subscriber) | set(gigabyte_days) | set(fetched)
                       | set(deliveries) | set(software) | set(sheets)):
        records = list(records_by_subscriber.get(name, ()))
        stored = float(gigabyte_days.get(name, 0.0))
        cold = float(cold_days.get(name, 0.0))
        quantities = _quantities(records, stored, days, cold=cold,
                                 cold_apart="gigabyte_month_cold" in tariff.prices,
                                 examinations=int(fetched.get(name, 0)),
                                 deliveries=int(deliveries.get(name, 0)),
                                 sheets=int(sheets.get(name, 0)))
        lines, total = [], Decimal(0)
        for item in tariff.items:
            price = tariff.price(item)
            amount = (quantities[item] * price).quantize(step, rounding=ROUND_HALF_UP)
            total += amount
            lines.append({"subscriber": name, "item": item,
                          "quantity": float(quantities[item]), "unit_price": _text(price),
                          "amount": _text(amount)})
        for line in _package_lines(software.get(name, ()), tariff):
            line["amount"] = (line["quantity"] * line["unit_price"]).quantize(
                step, rounding=ROUND_HALF_UP)
            total += line["amount"]
            lines.append({"subscriber": name, "item": line["item"],
                          "package": line["package"], "quantity": float(line["quantity"]),
                          "unit_price": _text(line["unit_price"]),
                          "amount": _text(line["amount"])})
        grand += total
        subscribers.append({
            "subscriber": name, "lines": lines, "total": _text(total),
            "usage": {**totals(records), "deliveries": int(deliveries.get(name, 0))},
            "gigabyte_days": stored, "cold_gigabyte_days": cold,
            "examinations_fetched": int(fetched.get(name, 0)),
            "excluded_platform_failures": sum(not billable(r) for r in records)})
    return {"month": month, "currency": tariff.currency, "tariff": tariff.name,
            "period_start": start, "period_end": end, "subscribers": subscribers,
            "total": _text(grand.quantize(step))}


def _quantity(value: float) -> str:
    return _text(_exact(value).normalize())


def to_csv(invoice_dict: Mapping) -> str:
    """The invoice as CSV: one row per line, then a TOTAL row per subscriber and, last,
    the invoice's TOTAL (with an empty subscriber)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    head = (invoice_dict.get("month", ""), invoice_dict.get("currency", ""))
    for sub in invoice_dict.get("subscribers", ()):
        for line in sub.get("lines", ()):
            item = " ".join(filter(None, (line.get("item", ""), line.get("package", ""))))
            writer.writerow((*head, line.get("subscriber", sub.get("subscriber", "")),
                             item, _quantity(line.get("quantity", 0.0)),
                             line.get("unit_price", ""), line.get("amount", "")))
        writer.writerow((*head, sub.get("subscriber", ""), "TOTAL", "", "", sub.get("total", "")))
    writer.writerow((*head, "", "TOTAL", "", "", invoice_dict.get("total", "")))
    return out.getvalue()
