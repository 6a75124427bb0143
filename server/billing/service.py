"""Usage reports and invoices as domain calls: who may see what, and what they hold.

A subscriber sees its own usage; naming another subscriber, or asking for every
subscriber at once, needs the ``admin`` role. Usage records come from the catalog's
``usage`` table (storage/usage.py), stored bytes from the image store's storage ledger
(storage/images.py), delivered pushes from the push table (storage/deliveries.py),
prices from the tariff (tariff.py) and the invoice rules from invoices.py. Calls take
plain values and return plain values; the GetUsage/GetInvoice messages are built by
the API layer (api/billing.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from medcompute.server.billing.invoices import invoice, month_bounds
from medcompute.server.billing.tariff import Tariff, load_tariff
from medcompute.server.errors import InvalidArgument, PermissionDenied
from medcompute.server.storage import prints as print_table
from medcompute.server.storage import software as software_table
from medcompute.server.storage.db import Database
from medcompute.server.storage.deliveries import DeliveryLog
from medcompute.server.storage.fetches import FetchLog
from medcompute.server.storage.images import ImageCatalog
from medcompute.server.storage.keys import Principal
from medcompute.server.storage.usage import GROUPINGS, UsageBook, day_of, summarize, totals

__all__ = ["BillingService", "MAX_RECORDS", "StorageUsage", "Usage", "scope"]

MAX_RECORDS = 10000
ADMIN = "admin"


@dataclass(frozen=True)
class StorageUsage:
    """A subscriber's stored bytes: gigabyte-days over a period, and bytes held now."""

    subscriber: str
    gigabyte_days: float
    bytes_now: int


@dataclass
class Usage:
    """A usage report: totals, ``(key, totals)`` groups, records (if asked) and storage."""

    totals: dict
    groups: list[tuple[str, dict]]
    records: list[dict] = field(default_factory=list)
    storage: list[StorageUsage] = field(default_factory=list)


def scope(principal: Principal, subscriber: str, all_subscribers: bool) -> str | None:
    """The subscriber a request is about (None: every subscriber), or PermissionDenied.

    Empty ``subscriber``: the caller itself. Another subscriber, or ``all_subscribers``,
    needs the admin role.
    """
    admin = ADMIN in principal.roles
    if all_subscribers:
        if subscriber:
            raise InvalidArgument("give either a subscriber or all_subscribers, not both",
                                  "all_subscribers")
        if not admin:
            raise PermissionDenied("the usage of every subscriber needs the admin role; "
                                   "leave all_subscribers unset to see your own",
                                   "all_subscribers")
        return None
    if subscriber and subscriber != principal.subscriber:
        if not admin:
            raise PermissionDenied("another subscriber's usage needs the admin role; leave "
                                   "subscriber empty to see your own", "subscriber")
        return subscriber
    return principal.subscriber


def _time(value: float, field: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"expected unix seconds (0 for unbounded), got {value}", field)
    return value


def _with_deliveries(groups: list[tuple[str, dict]], group_by: str,
                     pushed: list[tuple[str, float]]) -> list[tuple[str, dict]]:
    """The groups with their deliveries: by sender or by UTC day of delivery (a group of
    deliveries only is added); operation and device groups have none."""
    if group_by not in ("subscriber", "day", "none"):
        return groups
    counts: dict[str, int] = {}
    for sender, at in pushed:
        key = {"subscriber": sender, "day": day_of(at), "none": ""}[group_by]
        counts[key] = counts.get(key, 0) + 1
    found = dict(groups)
    for key in counts:
        found.setdefault(key, totals([]))
    return [(key, {**found[key], "deliveries": counts.get(key, 0)}) for key in sorted(found)]


class BillingService:
    """Usage reports and invoices of one data directory.

    Parameters
    ----------
    data_dir : str, Path or Database
        The server's shared catalog Database, or a data directory (this service then
        opens its own): the catalog file holds the usage records and the ledger.
    tariff : Tariff, optional
        The prices; default: the example prices shipped with the package.
    deliveries : DeliveryLog, optional
        Where delivered pushes are counted (e.g. the server's ``PushBook``, which is
        one); default: the data directory's own, opened and closed by this service.
    """

    def __init__(self, data_dir: str | Path | Database, tariff: Tariff | None = None,
                 deliveries: DeliveryLog | None = None):
        self.tariff = tariff if tariff is not None else load_tariff()
        self.book = UsageBook(data_dir)
        self._owns_deliveries = deliveries is None
        try:
            db = self.book.db
            self.ledger = ImageCatalog(db)
            self.fetches = FetchLog(db)
            self.software = software_table.SoftwareBook(db)
            self.prints = print_table.PrintBook(db)
            self.deliveries = deliveries if deliveries is not None else DeliveryLog(db)
        except BaseException:
            self.book.close()
            raise

    def close(self) -> None:
        self.book.close()
        self.ledger.close()
        self.fetches.close()
        self.software.close()
        self.prints.close()
        if self._owns_deliveries:
            self.deliveries.close()

    async def _storage(self, who: str | None, since: float, until: float,
                       also: set[str]) -> list[StorageUsage]:
        now = time.time()
        days = await self.ledger.agigabyte_days(who, since, until, now=now)
        held = await self.ledger.astored_bytes_now(who)
        if who is not None:
            names = {who}
        else:
            names = ({n for n, v in days.items() if v > 0} | {n for n, v in held.items() if v > 0}
                     | also)
        return [StorageUsage(subscriber=name, gigabyte_days=days.get(name, 0.0),
                             bytes_now=max(0, held.get(name, 0)))
                for name in sorted(names)]

    async def usage(self, principal: Principal, *, subscriber: str = "",
                    all_subscribers: bool = False, since: float = 0.0, until: float = 0.0,
                    group_by: str = "none", include_records: bool = False) -> Usage:
        """Totals, groups, optionally the records (at most MAX_RECORDS) and stored bytes
        of [since, until) (0: unbounded), for the caller or (admin) another subscriber
        or everyone; `group_by` is one of ``storage.usage.GROUPINGS``."""
        who = scope(principal, subscriber, all_subscribers)
        since, until = _time(since, "since"), _time(until, "until")
        if until and until < since:
            raise InvalidArgument(f"expected a time after since ({since}), got {until}",
                                  "until")
        if group_by not in GROUPINGS:
            raise InvalidArgument(f"expected one of {', '.join(GROUPINGS)}, got {group_by!r}",
                                  "group_by")
        records = await self.book.arecords(who, since, until)
        sums, groups = summarize(records, group_by)
        pushed = await self.deliveries.delivered_times(who, since, until or math.inf)
        sums["deliveries"] = len(pushed)
        report = Usage(totals=sums, groups=_with_deliveries(groups, group_by, pushed))
        if include_records:
            report.records = records[:MAX_RECORDS]
        also = {r.get("subscriber", "") for r in records}
        report.storage = await self._storage(who, since, until, also)
        return report

    async def invoice(self, principal: Principal, month: str, *, subscriber: str = "",
                      all_subscribers: bool = False) -> dict:
        """The invoice (as `invoices.invoice` returns it) of one UTC month ``YYYY-MM`` for
        the caller or (admin) another subscriber or everyone with usage or stored images
        in that month."""
        who = scope(principal, subscriber, all_subscribers)
        start, end = month_bounds(month)
        records = await self.book.arecords(who, start, end)
        by_subscriber: dict[str, list[dict]] = {} if who is None else {who: []}
        for r in records:
            by_subscriber.setdefault(r.get("subscriber", ""), []).append(r)
        days = await self.ledger.agigabyte_days(who, start, end)
        cold = await self.ledger.agigabyte_days(who, start, end, tier="cold")
        fetched = await self.fetches.examinations(who, start, end)
        stored = {name: value for name, value in days.items()
                  if who is not None or value > 0 or name in by_subscriber or name in fetched}
        delivered = await self.deliveries.delivered_counts(who, start, end)
        software: dict[str, list[dict]] = {}
        for event in await self.book.db.read(software_table.events, who, start, end):
            software.setdefault(event["subscriber"], []).append(event)
        sheets = await self.book.db.read(print_table.sheets, who, start, end)
        return invoice(month, by_subscriber, stored, self.tariff, cold_gigabyte_days=cold,
                       examinations=fetched, deliveries=delivered, software=software,
                       sheets=sheets)
