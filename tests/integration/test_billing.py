"""Invoices from a real run: a server priced with a test tariff, jobs of known sizes, and
the invoice checked against values computed by hand from the tariff and against the
usage records the server kept."""

import time
from decimal import ROUND_HALF_UP, Decimal

import grpc
import numpy as np
import pytest

from medcompute.client import Client, ServiceError
from medcompute.server.config import ServerConfig
from tests.postgres_peer import CATALOGS, catalog_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TARIFF = """\
name = "test tariff"
currency = "CHF"
decimals = 2

[prices]
job = 1.00
image = 0.50
megabyte = 0.25
cpu_second = 0
gpu_second = 0
gigabyte_month = 0
"""


@pytest.fixture(scope="module", params=CATALOGS)
def priced(request, tmp_path_factory, server_thread):
    data = tmp_path_factory.mktemp("billing")
    tariff = data / "tariff.toml"
    tariff.write_text(TARIFF)
    config = ServerConfig(address="127.0.0.1:0", data_dir=data / "data", workers=1,
                          gpu_workers=0, tariff=tariff, catalog=catalog_spec(request))
    with server_thread(config) as server:
        yield server


def test_the_invoice_of_a_real_run_matches_the_hand_computed_total(priced):
    image = np.ones((250, 250), np.float32)           # 250 000 bytes = 0.25 MB
    with Client(priced.address, timeout=60) as c:
        c.process(image, ["gaussian:sigma=1"])                       # 1 image
        c.process(image, ["subtract"], operands=[image])             # 2 images
        job = c.submit(image, ["edge:operator=sobel"])               # 1 image, asynchronous
        c.wait(job.job_id, timeout=60)
        with pytest.raises(ServiceError) as info:                    # the caller's mistake,
            c.process(image, ["gaussian:sigma=-1"])                  # refused before upload
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        month = time.strftime("%Y-%m", time.gmtime())
        invoice = c.invoice(month)
        usage = c.usage(include_records=True)

    # By hand: 4 jobs (the refused one was created, so it counts: only the platform's
    # failures are free) = 4 x 1.00 = 4.00; images 1 + 2 + 1 + 1 = 5 x 0.50 = 2.50;
    # bytes_in 0.25 + 0.50 + 0.25 + 0 (refused before its pixels) = 1.00 MB x 0.25 = 0.25;
    # CPU, GPU and storage are priced 0. Total 6.75 CHF.
    assert (invoice.currency, invoice.tariff, invoice.month) == ("CHF", "test tariff", month)
    [mine] = invoice.subscribers
    lines = {line.item: line for line in mine.lines}
    assert (lines["job"].quantity, lines["job"].amount) == (4, "4.00")
    assert (lines["image"].quantity, lines["image"].amount) == (5, "2.50")
    assert (lines["megabyte"].quantity, lines["megabyte"].amount) == (1.0, "0.25")
    assert lines["cpu_second"].amount == "0.00" and lines["gigabyte_month"].amount == "0.00"
    assert mine.total == invoice.total == "6.75"
    assert mine.excluded_platform_failures == 0

    # Against the usage records: the same jobs, images and bytes.
    records = list(usage.records)
    assert len(records) == 4 == usage.totals.billable_jobs
    assert sum(r.images for r in records) == 5
    assert sum(r.bytes_in for r in records) == 1_000_000
    from_records = (Decimal(len(records)) * Decimal("1.00")
                    + Decimal(sum(r.images for r in records)) * Decimal("0.50")
                    + Decimal(sum(r.bytes_in for r in records)) / 10**6 * Decimal("0.25"))
    assert str(from_records.quantize(Decimal("0.01"), ROUND_HALF_UP)) == invoice.total
    assert sorted(r.state for r in records) == ["FAILED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]


def test_usage_is_grouped_by_operation_and_device(priced):
    with Client(priced.address, timeout=60) as c:
        c.process(np.ones((32, 32), np.float32), ["laplacian", "gaussian:sigma=1"])
        by_op = {g.key: g.totals for g in c.usage(group_by="operation").groups}
        by_device = {g.key: g.totals for g in c.usage(group_by="device").groups}
        total = c.usage().totals
    assert by_op["laplacian"].jobs == 1 and by_op["gaussian"].jobs >= 2
    assert sum(g.jobs for g in by_device.values()) == total.jobs
    assert not total.HasField("gpu_seconds")          # no GPU measured: absent, not 0


def test_a_bad_month_and_anothers_usage_are_refused(priced):
    with Client(priced.address, timeout=60) as c:
        with pytest.raises(ServiceError) as info:
            c.invoice("2026-13")
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details.startswith("month:")
        # Without keys the caller is the loopback subscriber with every role, admin
        # included: it may ask for everyone.
        assert c.usage(all_subscribers=True).totals.jobs >= 1
