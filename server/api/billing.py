"""GetUsage and GetInvoice: the request messages unpacked for the billing service, and
its usage reports and invoices packed into reply messages. Translation only; who may
see what, and what is counted, is ``billing/service.py``'s."""

from __future__ import annotations

from medcompute.proto import wire
from medcompute.proto.v1 import jobs_pb2, processing_pb2
from medcompute.server.billing.service import BillingService, Usage
from medcompute.server.errors import InvalidArgument
from medcompute.server.storage.keys import Principal

__all__ = ["get_invoice", "get_usage", "grouping", "usage_response"]

_GROUPINGS = {
    jobs_pb2.USAGE_GROUPING_UNSPECIFIED: "none",   # the documented default
    jobs_pb2.USAGE_GROUPING_NONE: "none",
    jobs_pb2.USAGE_GROUPING_DAY: "day",
    jobs_pb2.USAGE_GROUPING_OPERATION: "operation",
    jobs_pb2.USAGE_GROUPING_DEVICE: "device",
    jobs_pb2.USAGE_GROUPING_SUBSCRIBER: "subscriber",
}
_RECORD_FIELDS = frozenset(processing_pb2.UsageRecord.DESCRIPTOR.fields_by_name)


def grouping(value: int) -> str:
    """The billing service's name of a ``UsageGrouping`` value, or InvalidArgument."""
    name = _GROUPINGS.get(value)
    if name is None:
        raise InvalidArgument(wire.enum_choices(jobs_pb2.UsageGrouping, value), "group_by")
    return name


def _record(record: dict) -> processing_pb2.UsageRecord:
    return processing_pb2.UsageRecord(**{k: v for k, v in record.items()
                                         if k in _RECORD_FIELDS and v is not None})


def usage_response(usage: Usage, since: float, until: float) -> jobs_pb2.GetUsageResponse:
    """A usage report as the GetUsage reply (``since``/``until`` as the request gave them)."""
    return jobs_pb2.GetUsageResponse(
        totals=jobs_pb2.UsageTotals(**usage.totals),
        groups=[jobs_pb2.UsageGroup(key=key, totals=jobs_pb2.UsageTotals(**t))
                for key, t in usage.groups],
        records=[_record(r) for r in usage.records],
        storage=[jobs_pb2.StorageUsage(subscriber=s.subscriber, gigabyte_days=s.gigabyte_days,
                                       bytes_now=s.bytes_now) for s in usage.storage],
        since=since, until=until)


async def get_usage(billing: BillingService, request: jobs_pb2.GetUsageRequest,
                    principal: Principal) -> jobs_pb2.GetUsageResponse:
    """GetUsage: the request's period, grouping and scope, for the caller."""
    group_by = grouping(request.group_by)
    usage = await billing.usage(
        principal, subscriber=request.subscriber, all_subscribers=request.all_subscribers,
        since=request.since, until=request.until, group_by=group_by,
        include_records=request.include_records)
    return usage_response(usage, request.since, request.until)


async def get_invoice(billing: BillingService, request: jobs_pb2.GetInvoiceRequest,
                      principal: Principal) -> jobs_pb2.Invoice:
    """GetInvoice's invoice: the request's month and scope, for the caller."""
    return jobs_pb2.Invoice(**await billing.invoice(
        principal, request.month, subscriber=request.subscriber,
        all_subscribers=request.all_subscribers))
