"""GetUsage and GetInvoice as domain calls: who may see what, and the replies they build.

A subscriber sees its own usage; naming another subscriber, or asking for every
subscriber at once, needs the ``admin`` role. Usage records come from the catalog's
``usage`` table (storage/usage.py), stored bytes from the image store's storage ledger
(storage/images.py), delivered pushes from the push table (storage/deliveries.py),
prices from the tariff (tariff.py) and the invoice rules from invoices.py. The servicer
only unpacks the request and hands this module the caller.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from medcompute.proto import wire
from medcompute.proto.v1 import jobs_pb2, processing_pb2
from medcompute.server.billing.invoices import invoice, month_bounds
from medcompute.server.billing.tariff import Tariff, load_tariff
from medcompute.server.errors import InvalidArgument, PermissionDenied
from medcompute.server.storage.deliveries import DeliveryLog
from medcompute.server.storage.fetches import FetchLog
from medcompute.server.storage.images import ImageCatalog
from medcompute.server.storage.keys import Principal
from medcompute.server.storage.usage import UsageBook, day_of, summarize, totals

__all__ = ["BillingService", "MAX_RECORDS", "scope"]

MAX_RECORDS = 10000
ADMIN = "admin"

_GROUPINGS = {
    jobs_pb2.USAGE_GROUPING_UNSPECIFIED: "none",   # the documented default
    jobs_pb2.USAGE_GROUPING_NONE: "none",
    jobs_pb2.USAGE_GROUPING_DAY: "day",
    jobs_pb2.USAGE_GROUPING_OPERATION: "operation",
    jobs_pb2.USAGE_GROUPING_DEVICE: "device",
    jobs_pb2.USAGE_GROUPING_SUBSCRIBER: "subscriber",
}
_RECORD_FIELDS = frozenset(processing_pb2.UsageRecord.DESCRIPTOR.fields_by_name)


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


def _record(record: dict) -> processing_pb2.UsageRecord:
    return processing_pb2.UsageRecord(**{k: v for k, v in record.items()
                                         if k in _RECORD_FIELDS and v is not None})


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
    data_dir : str or Path
        The data directory (its catalog file holds the usage records and the ledger).
    tariff : Tariff, optional
        The prices; default: the example prices shipped with the package.
    deliveries : DeliveryLog, optional
        Where delivered pushes are counted (e.g. the server's ``PushBook``, which is
        one); default: the data directory's own, opened and closed by this service.
    """

    def __init__(self, data_dir: str | Path, tariff: Tariff | None = None,
                 deliveries: DeliveryLog | None = None):
        self.tariff = tariff if tariff is not None else load_tariff()
        self.book = UsageBook(data_dir)
        self._owns_deliveries = deliveries is None
        try:
            self.ledger = ImageCatalog(data_dir)
            self.fetches = FetchLog(data_dir)
            self.deliveries = deliveries if deliveries is not None else DeliveryLog(data_dir)
        except BaseException:
            self.book.close()
            raise

    def close(self) -> None:
        self.book.close()
        self.ledger.close()
        self.fetches.close()
        if self._owns_deliveries:
            self.deliveries.close()

    async def _storage(self, who: str | None, since: float, until: float,
                       also: set[str]) -> list[jobs_pb2.StorageUsage]:
        now = time.time()
        days = await self.ledger.agigabyte_days(who, since, until, now=now)
        held = await self.ledger.astored_bytes_now(who)
        if who is not None:
            names = {who}
        else:
            names = ({n for n, v in days.items() if v > 0} | {n for n, v in held.items() if v > 0}
                     | also)
        return [jobs_pb2.StorageUsage(subscriber=name, gigabyte_days=days.get(name, 0.0),
                                      bytes_now=max(0, held.get(name, 0)))
                for name in sorted(names)]

    async def get_usage(self, request: jobs_pb2.GetUsageRequest,
                        principal: Principal) -> jobs_pb2.GetUsageResponse:
        """Totals, groups, optionally the records (at most MAX_RECORDS) and stored bytes
        of a period, for the caller or (admin) another subscriber or everyone."""
        who = scope(principal, request.subscriber, request.all_subscribers)
        since, until = _time(request.since, "since"), _time(request.until, "until")
        if until and until < since:
            raise InvalidArgument(f"expected a time after since ({since}), got {until}",
                                  "until")
        group_by = _GROUPINGS.get(request.group_by)
        if group_by is None:
            raise InvalidArgument(wire.enum_choices(jobs_pb2.UsageGrouping, request.group_by),
                                  "group_by")
        records = await self.book.arecords(who, since, until)
        sums, groups = summarize(records, group_by)
        pushed = await self.deliveries.delivered_times(who, since, until or math.inf)
        sums["deliveries"] = len(pushed)
        groups = _with_deliveries(groups, group_by, pushed)
        reply = jobs_pb2.GetUsageResponse(
            totals=jobs_pb2.UsageTotals(**sums),
            groups=[jobs_pb2.UsageGroup(key=key, totals=jobs_pb2.UsageTotals(**t))
                    for key, t in groups],
            since=request.since, until=request.until)
        if request.include_records:
            reply.records.extend(_record(r) for r in records[:MAX_RECORDS])
        also = {r.get("subscriber", "") for r in records}
        reply.storage.extend(await self._storage(who, since, until, also))
        return reply

    async def get_invoice(self, request: jobs_pb2.GetInvoiceRequest,
                          principal: Principal) -> jobs_pb2.Invoice:
        """The invoice of one UTC month for the caller or (admin) another subscriber or
        everyone with usage or stored images in that month."""
        who = scope(principal, request.subscriber, request.all_subscribers)
        start, end = month_bounds(request.month)
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
        return jobs_pb2.Invoice(**invoice(request.month, by_subscriber, stored, self.tariff,
                                          cold_gigabyte_days=cold, examinations=fetched,
                                          deliveries=delivered))
