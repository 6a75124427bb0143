"""``medcompute usage``: the argument forms, the tables, and a round trip through a real
server whose data directory holds usage records written by hand (a GPU job among them)."""

from __future__ import annotations

import argparse
import csv
import io
import json

import grpc
import pytest

from medcompute.client import ServiceError
from medcompute.client.cli import build_parser
from medcompute.client.cli.usage import (
    format_invoice,
    format_records,
    format_usage,
    message_dict,
    parse_moment,
    parse_month,
)
from medcompute.proto.v1 import jobs_pb2, processing_pb2
from medcompute.server.billing.invoices import invoice, to_csv
from medcompute.server.billing.tariff import parse_tariff
from medcompute.server.config import ServerConfig
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.storage.keys import KeyStore
from tests.usage_helpers import finish_usage, record

pytestmark = pytest.mark.timeout(60)

NOV = 1_793_491_200.0          # 2026-11-01 00:00 UTC
DAY = 86_400.0
TARIFF_TEXT = """
name = "cli"
currency = "EUR"
[prices]
job = 0.05
image = 0.01
megabyte = 0.10
cpu_second = 0.002
gpu_second = 0.01
gigabyte_month = 0.50
"""
TARIFF = parse_tariff(TARIFF_TEXT)


# -- arguments ------------------------------------------------------------------------------

def test_dates_months_and_unix_seconds():
    assert parse_moment("2026-11-01") == NOV
    assert parse_moment("2026-11-01T06:00") == NOV + 6 * 3600
    assert parse_moment("2026-11-01T06:00+01:00") == NOV + 5 * 3600
    assert parse_moment(str(int(NOV))) == NOV and parse_moment("12.5") == 12.5
    assert parse_month("2026-11") == "2026-11"
    for bad, parse in (("yesterday", parse_moment), ("2026-11", parse_moment),
                       ("2026-13", parse_month), ("11/2026", parse_month)):
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            parse(bad)


def test_usage_and_its_invoice_subcommand_parse():
    args = build_parser().parse_args(["usage", "--group-by", "day", "--since", "2026-11-01"])
    assert args.func.__name__ == "_usage" and args.group_by == "day" and args.since == NOV
    assert args.until == 0.0 and not args.all_subscribers and not args.records

    args = build_parser().parse_args(["usage", "invoice", "--month", "2026-11"])
    assert args.func.__name__ == "_invoice" and args.month == "2026-11"
    assert args.format == "text" and args.server == "127.0.0.1:50051" and args.timeout == 600

    # Options given before `invoice` are kept; those after it are the invoice's own.
    args = build_parser().parse_args(["usage", "--server", "h:1", "--all", "--timeout", "5",
                                 "invoice", "--month", "2026-11", "--format", "csv"])
    assert (args.server, args.timeout, args.all_subscribers, args.format) == (
        "h:1", 5.0, True, "csv")
    args = build_parser().parse_args(["usage", "invoice", "--month", "2026-11", "--subscriber",
                                 "bob", "--server", "h:2", "--api-key", "k"])
    assert (args.subscriber, args.server, args.api_key) == ("bob", "h:2", "k")

    for argv in (["usage", "--group-by", "week"], ["usage", "invoice"],
                 ["usage", "invoice", "--month", "2026-13"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)


# -- formatting -----------------------------------------------------------------------------

def _reply() -> jobs_pb2.GetUsageResponse:
    cpu = jobs_pb2.UsageTotals(jobs=3, billable_jobs=2, failed_jobs=1, platform_failures=1,
                               cpu_seconds=12.5, bytes_in=5_500_000, bytes_out=2_000_000,
                               deliveries=2)
    gpu = jobs_pb2.UsageTotals(jobs=1, billable_jobs=1, gpu_seconds=4.0, energy_joules=360.0,
                               bytes_in=1_000_000)
    total = jobs_pb2.UsageTotals(jobs=4, billable_jobs=3, failed_jobs=1, platform_failures=1,
                                 cpu_seconds=12.5, gpu_seconds=4.0, energy_joules=360.0,
                                 bytes_in=6_500_000, bytes_out=2_000_000, fallbacks=1,
                                 deliveries=2)
    return jobs_pb2.GetUsageResponse(
        totals=total, since=NOV, until=NOV + 30 * DAY,
        groups=[jobs_pb2.UsageGroup(key="cpu", totals=cpu),
                jobs_pb2.UsageGroup(key="NVIDIA H200", totals=gpu)],
        storage=[jobs_pb2.StorageUsage(subscriber="alice", gigabyte_days=30.0,
                                       bytes_now=1_500_000_000)])


def test_the_usage_table():
    text = format_usage(_reply(), "device")
    lines = text.splitlines()
    assert lines[0] == "usage, 2026-11-01 to 2026-12-01 (UTC)"
    assert lines[2].split() == ["device", "jobs", "billable", "failed", "CPU", "s", "GPU", "s",
                                "MB", "in", "MB", "out", "deliveries"]
    assert lines[3].split() == ["cpu", "3", "2", "1", "12.50", "—", "5.50", "2.00", "2"]
    assert lines[4].split() == ["NVIDIA", "H200", "1", "1", "0", "0.00", "4.00", "1.00",
                                "0.00", "0"]
    assert lines[5].split() == ["total", "4", "3", "1", "12.50", "4.00", "6.50", "2.00", "2"]
    assert "1 failed through the platform's fault (not charged)" in lines[6]
    assert "GPU energy 0.0001 kWh" in lines[6]
    assert lines[-1].split() == ["alice", "30.000", "1.500"]


def test_without_grouping_only_the_total_and_a_dash_for_unmeasured_gpu():
    reply = jobs_pb2.GetUsageResponse(totals=jobs_pb2.UsageTotals(jobs=1, cpu_seconds=1.0))
    lines = format_usage(reply).splitlines()
    assert lines[0] == "usage, all time"
    assert lines[3].split() == ["total", "1", "0", "0", "1.00", "—", "0.00", "0.00", "0"]
    assert len(lines) == 4


def test_the_records_table():
    r = processing_pb2.UsageRecord(job_id="j1", subscriber="alice", operations=["gaussian"],
                                   state="FAILED", platform_fault=True, device="cpu",
                                   compute_seconds=2.0, finished_at=NOV + 60,
                                   bytes_in=3_000_000)
    g = processing_pb2.UsageRecord(job_id="j2", subscriber="bob", operations=["edge", "mip"],
                                   state="SUCCEEDED", device="NVIDIA H200",
                                   compute_seconds=1.0, gpu_seconds=1.0, finished_at=NOV)
    lines = format_records([r, g]).splitlines()
    assert "platform fault, not charged" in lines[1]
    assert lines[1].split()[:5] == ["j1", "2026-11-01", "00:01:00", "alice", "FAILED"]
    assert lines[1].split()[-4:] == ["2.00", "—", "3.00", "gaussian"]     # CPU s, GPU s, MB
    assert lines[2].split()[-4:] == ["—", "1.00", "0.00", "edge,mip"]


def test_message_dict_leaves_out_what_was_not_measured():
    d = message_dict(_reply())
    assert d["groups"][0]["totals"]["jobs"] == 3
    assert "gpu_seconds" not in d["groups"][0]["totals"]
    assert d["groups"][1]["totals"]["gpu_seconds"] == 4.0
    assert d["storage"][0]["bytes_now"] == 1_500_000_000          # a number, not a string
    assert d["records"] == []
    json.dumps(d)


def _invoice_message() -> jobs_pb2.Invoice:
    alice = [record("a1", images=1, bytes_in=2_000_000, compute=5.0, finished_at=NOV),
             record("a2", state="FAILED", platform_fault=True, finished_at=NOV)]
    return jobs_pb2.Invoice(**invoice("2026-11", {"alice": alice}, {"alice": 15.0}, TARIFF))


def test_the_invoice_as_text_and_as_csv():
    message = _invoice_message()
    text = format_invoice(message)
    lines = text.splitlines()
    assert lines[0] == ("invoice 2026-11 (2026-11-01 to 2026-12-01 (UTC)), tariff 'cli', "
                        "amounts in EUR")
    assert lines[2] == "alice"
    # job 0.05 + image 0.01 + megabyte 2 x 0.10 = 0.20 + cpu 5 x 0.002 = 0.01
    # + gigabyte_month 15 / 30 x 0.50 = 0.25 -> 0.52
    assert lines[4].split() == ["job", "1", "0.05", "0.05"]
    assert lines[9].split() == ["gigabyte_month", "0.5", "0.50", "0.25"]
    assert lines[10].split() == ["total", "0.52"]
    assert "1 job(s) failed through the platform's fault" in lines[11]
    assert lines[-1] == "total 0.52 EUR"
    rows = list(csv.reader(io.StringIO(to_csv(message_dict(message)))))
    assert rows[0] == ["month", "currency", "subscriber", "item", "quantity", "unit_price",
                       "amount"]
    assert rows[-2] == ["2026-11", "EUR", "alice", "TOTAL", "", "", "0.52"]
    assert rows[-1] == ["2026-11", "EUR", "", "TOTAL", "", "", "0.52"]


# -- round trip through a server --------------------------------------------------------------

@pytest.fixture
def server(tmp_path, server_thread):
    """A real server on a data directory with two usage records and two subscribers' keys."""
    catalog = Catalog(tmp_path)
    try:
        for r in (record("a1", images=1, bytes_in=2_000_000, compute=5.0, finished_at=NOV),
                  record("b1", subscriber="bob", backend="cupy", device="NVIDIA H200",
                         images=1, bytes_in=2_000_000, compute=4.0, gpu=4.0,
                         finished_at=NOV + DAY)):
            finish_usage(catalog, r)
    finally:
        catalog.close()
    keys = KeyStore(tmp_path)
    tokens = {"alice": keys.create("alice", ["process"])[1],
              "admin": keys.create("root", ["admin"])[1]}
    keys.close()
    tariff = tmp_path / "tariff.toml"
    tariff.write_text(TARIFF_TEXT)
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, workers=1,
                          gpu_workers=0, tariff=tariff)
    with server_thread(config) as running:
        yield running.address, tokens


def _run(capsys, *argv) -> str:
    args = build_parser().parse_args(list(argv))
    assert args.func(args) == 0
    return capsys.readouterr().out


@pytest.mark.integration
def test_usage_and_invoice_through_a_server(server, capsys):
    server, keys = server
    alice, admin = keys["alice"], keys["admin"]
    out = _run(capsys, "usage", "--server", server, "--api-key", alice, "--group-by", "day",
               "--records")
    assert "2026-11-01" in out and "a1" in out and "b1" not in out
    data = json.loads(_run(capsys, "usage", "--server", server, "--api-key", admin, "--all",
                           "--group-by", "subscriber", "--json"))
    assert [g["key"] for g in data["groups"]] == ["alice", "bob"]
    assert data["totals"]["gpu_seconds"] == 4.0 and "gpu_seconds" not in data["groups"][0][
        "totals"]

    # alice, November: job 0.05 + image 0.01 + megabyte 2 x 0.10 = 0.20 + cpu 5 x 0.002
    # = 0.01 -> 0.27
    out = _run(capsys, "usage", "--server", server, "--api-key", alice, "invoice", "--month",
               "2026-11", "--format", "csv")
    assert out.splitlines()[-1] == "2026-11,EUR,,TOTAL,,,0.27"
    out = _run(capsys, "usage", "invoice", "--month", "2026-11", "--server", server,
               "--api-key", admin, "--all")
    # bob: job 0.05 + image 0.01 + megabyte 2 x 0.10 = 0.20 + gpu 4 x 0.01 = 0.04 -> 0.30;
    # both: 0.27 + 0.30 = 0.57
    assert out.splitlines()[-1] == "total 0.57 EUR"
    data = json.loads(_run(capsys, "usage", "invoice", "--month", "2026-11", "--server",
                           server, "--api-key", alice, "--format", "json"))
    assert data["total"] == "0.27" and data["subscribers"][0]["subscriber"] == "alice"


@pytest.mark.integration
def test_another_subscriber_needs_an_admin_key(server, capsys):
    server, keys = server
    args = build_parser().parse_args(["usage", "--server", server, "--api-key", keys["alice"],
                                 "--subscriber", "bob"])
    with pytest.raises(ServiceError) as caught:
        args.func(args)
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "subscriber" in caught.value.details


def test_the_invoices_columns_stay_aligned_with_long_item_names():
    message = _invoice_message()
    line = message.subscribers[0].lines.add()
    line.item, line.quantity, line.unit_price, line.amount = \
        "gigabyte_month_cold", 0.25, "0.10", "0.03"
    lines = format_invoice(message).splitlines()
    table = [ln for ln in lines if ln.startswith("  ") and not ln.startswith("  not charged")]
    assert any("gigabyte_month_cold" in ln for ln in table)
    header = table[0]
    for column in ("quantity", "unit price", "amount"):
        end = header.index(column) + len(column)       # right-aligned: every row ends here
        for row in table[1:]:
            assert row[end - 1] != " " or row.strip().startswith("total"), (column, row)
            assert len(row) <= end or row[end] == " ", (column, row)
    assert len({len(row) for row in table}) == 1, table
