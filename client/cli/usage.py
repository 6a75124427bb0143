"""``medcompute usage``: usage of a period, and monthly invoices.

    medcompute usage [--since DATE] [--until DATE] [--group-by none|day|operation|device|subscriber]
                     [--subscriber NAME | --all] [--records] [--json]
    medcompute usage invoice --month YYYY-MM [--subscriber NAME | --all]
                     [--format text|csv|json]

Dates are YYYY-MM-DD (UTC midnight), an ISO 8601 time, or unix seconds. Another
subscriber's usage, or everyone's (``--all``), needs an admin key.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys

from medcompute.client.cli.common import open_client, parse_moment, server_side

__all__ = ["add_commands", "format_invoice", "format_records", "format_usage",
           "message_dict", "parse_moment", "parse_month"]

GROUPS = ("none", "day", "operation", "device", "subscriber")
ABSENT = "—"
def parse_month(text: str) -> str:
    """``YYYY-MM``, checked."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise argparse.ArgumentTypeError(f"expected a month like 2026-11, got {text!r}")
    return m.group(0)


def message_dict(message) -> dict:
    """A message as plain Python values: numbers stay numbers, and a field that is absent
    (an optional one not set, such as an unmeasured ``gpu_seconds``) is left out."""
    out = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.is_repeated:
            out[field.name] = [message_dict(v) if field.message_type else v for v in value]
        elif field.has_presence and not message.HasField(field.name):
            continue
        else:
            out[field.name] = message_dict(value) if field.message_type else value
    return out


def _when(ts: float) -> str:
    moment = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    if moment.time() == dt.time(0):
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _period(since: float, until: float) -> str:
    if since and until:
        return f"{_when(since)} to {_when(until)} (UTC)"
    if since:
        return f"since {_when(since)} (UTC)"
    if until:
        return f"until {_when(until)} (UTC)"
    return "all time"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def _gpu(totals) -> str:
    return f"{totals.gpu_seconds:.2f}" if totals.HasField("gpu_seconds") else ABSENT


def _row(key: str, t) -> str:
    return (f"{key:<24} {t.jobs:>7} {t.billable_jobs:>9} {t.failed_jobs:>7} "
            f"{t.cpu_seconds:>10.2f} {_gpu(t):>10} {_mb(t.bytes_in):>10} {_mb(t.bytes_out):>10}"
            f" {t.deliveries:>10}")


def format_usage(reply, group_by: str = "none") -> str:
    """A GetUsageResponse as a table: one row per group, the total, stored bytes.
    ``deliveries`` are the pushes to DICOM nodes delivered in the period."""
    label = {"none": "", "day": "day (UTC)"}.get(group_by, group_by)
    lines = [f"usage, {_period(reply.since, reply.until)}", "",
             f"{label:<24} {'jobs':>7} {'billable':>9} {'failed':>7} {'CPU s':>10} "
             f"{'GPU s':>10} {'MB in':>10} {'MB out':>10} {'deliveries':>10}"]
    if group_by != "none":
        lines.extend(_row(g.key or "(none)", g.totals) for g in reply.groups)
    lines.append(_row("total", reply.totals))
    t = reply.totals
    notes = []
    if t.platform_failures:
        notes.append(f"{t.platform_failures} failed through the platform's fault (not charged)")
    if t.fallbacks:
        notes.append(f"{t.fallbacks} fell back from GPU to CPU")
    if t.HasField("energy_joules"):
        notes.append(f"GPU energy {t.energy_joules / 3.6e6:.4f} kWh")
    if notes:
        lines.append("; ".join(notes))
    if reply.storage:
        lines += ["", f"{'storage':<24} {'GB-days':>12} {'stored now (GB)':>16}"]
        lines.extend(f"{s.subscriber:<24} {s.gigabyte_days:>12.3f} {s.bytes_now / 1e9:>16.3f}"
                     for s in reply.storage)
    return "\n".join(lines) + "\n"


def format_records(records) -> str:
    """UsageRecord messages as a table, one line each."""
    lines = [f"{'job':<34} {'finished (UTC)':<19} {'subscriber':<16} {'state':<10} "
             f"{'device':<20} {'CPU s':>9} {'GPU s':>9} {'MB in':>9}  operations"]
    for r in records:
        gpu = f"{r.gpu_seconds:.2f}" if r.HasField("gpu_seconds") else ABSENT
        cpu = ABSENT if r.HasField("gpu_seconds") else f"{r.compute_seconds:.2f}"
        state = r.state + (" (platform fault, not charged)" if r.platform_fault else "")
        lines.append(f"{r.job_id:<34} {_when(r.finished_at):<19} {r.subscriber:<16} "
                     f"{state:<10} {r.device or '-':<20} {cpu:>9} {gpu:>9} "
                     f"{_mb(r.bytes_in):>9}  {','.join(r.operations)}")
    return "\n".join(lines) + "\n"


def _quantity(q: float) -> str:
    return f"{q:.6f}".rstrip("0").rstrip(".")


def format_invoice(invoice) -> str:
    """An Invoice message as readable text."""
    lines = [f"invoice {invoice.month} ({_period(invoice.period_start, invoice.period_end)}), "
             f"tariff {invoice.tariff!r}, amounts in {invoice.currency}"]
    # The item column as wide as its longest name (gigabyte_month_cold, examination_fetched).
    w = max([16] + [len(line.item) for sub in invoice.subscribers for line in sub.lines])
    for sub in invoice.subscribers:
        lines += ["", sub.subscriber or "(no subscriber)",
                  f"  {'item':<{w}} {'quantity':>16} {'unit price':>12} {'amount':>12}"]
        lines.extend(f"  {line.item:<{w}} {_quantity(line.quantity):>16} "
                     f"{line.unit_price:>12} {line.amount:>12}" for line in sub.lines)
        lines.append(f"  {'total':<{w}} {'':>16} {'':>12} {sub.total:>12}")
        if sub.excluded_platform_failures:
            lines.append(f"  not charged: {sub.excluded_platform_failures} job(s) failed "
                         "through the platform's fault")
    lines += ["", f"total {invoice.total} {invoice.currency}"]
    return "\n".join(lines) + "\n"


def _usage(args) -> int:
    with open_client(args) as client:
        reply = client.usage(since=args.since, until=args.until, group_by=args.group_by,
                             subscriber=args.subscriber or "",
                             all_subscribers=args.all_subscribers,
                             include_records=args.records)
    if args.json:
        print(json.dumps(message_dict(reply), indent=2))
        return 0
    sys.stdout.write(format_usage(reply, args.group_by))
    if args.records:
        sys.stdout.write("\n" + format_records(reply.records))
    return 0


def _invoice(args) -> int:
    with open_client(args) as client:
        invoice = client.invoice(args.month, subscriber=args.subscriber or "",
                                 all_subscribers=args.all_subscribers)
    if args.format == "json" or getattr(args, "json", False):
        print(json.dumps(message_dict(invoice), indent=2))
    elif args.format == "csv":
        sys.stdout.write(server_side().invoice_csv(message_dict(invoice)))
    else:
        sys.stdout.write(format_invoice(invoice))
    return 0


class _Unset:
    """Adds arguments whose default is SUPPRESS: an option given before ``invoice`` (parsed
    by ``usage``) is then not overwritten by the sub-command's default."""

    def __init__(self, parser: argparse.ArgumentParser):
        self._parser = parser

    def add_argument(self, *names, **kwargs):
        kwargs["default"] = argparse.SUPPRESS
        return self._parser.add_argument(*names, **kwargs)

    def __getattr__(self, name):
        return getattr(self._parser, name)


def _scope_options(p) -> None:
    p.add_argument("--subscriber", metavar="NAME",
                   help="this subscriber's (admin key needed for another than yours)")
    p.add_argument("--all", dest="all_subscribers", action="store_true",
                   help="every subscriber's (admin key needed)")


def add_commands(sub, client_options) -> None:
    """Add ``usage`` (and ``usage invoice``) to the ``medcompute`` parser."""
    usage = sub.add_parser(
        "usage", help="usage totals of a period, stored gigabyte-days, invoices",
        description="Usage of a period [--since, --until) on the jobs' finishing times: "
        "jobs, billable jobs, CPU and GPU seconds, megabytes in and out, and stored "
        "gigabyte-days. `medcompute usage invoice --month YYYY-MM` prices a month.")
    usage.add_argument("--since", type=parse_moment, default=0.0, metavar="DATE",
                       help="from this date or time (YYYY-MM-DD UTC, ISO 8601, or unix "
                       "seconds; default: the beginning)")
    usage.add_argument("--until", type=parse_moment, default=0.0, metavar="DATE",
                       help="before this date or time (default: now)")
    usage.add_argument("--group-by", choices=GROUPS, default="none",
                       help="one row per UTC day, operation, device or subscriber "
                       "(default none: the totals only)")
    _scope_options(usage)
    usage.add_argument("--records", action="store_true",
                       help="also list the usage records (at most 10000)")
    usage.add_argument("--json", action="store_true", help="the whole reply as JSON")
    client_options(usage)
    usage.set_defaults(func=_usage)

    actions = usage.add_subparsers(dest="usage_command", metavar="ACTION")
    invoice = actions.add_parser(
        "invoice", help="the invoice of one month (UTC)",
        description="Price one calendar month (UTC) with the server's tariff: one line per "
        "item for each subscriber; jobs failed through the platform's fault are not "
        "charged.")
    invoice.add_argument("--month", required=True, type=parse_month, metavar="YYYY-MM",
                         help="the calendar month, e.g. 2026-11")
    _scope_options(_Unset(invoice))
    invoice.add_argument("--format", choices=["text", "csv", "json"], default="text",
                         help="text (default), csv (with TOTAL rows) or json")
    _Unset(invoice).add_argument("--json", action="store_true",
                                 help="the same as --format json (the Invoice message)")
    client_options(_Unset(invoice))
    invoice.set_defaults(func=_invoice)
