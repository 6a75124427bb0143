"""Tests of medcompute.server.api.billing: UsageGrouping values to the billing service's
names, and usage reports packed into GetUsage replies."""

from __future__ import annotations

import pytest

from medcompute.proto.v1 import jobs_pb2
from medcompute.server.api.billing import grouping, usage_response
from medcompute.server.billing.service import StorageUsage, Usage
from medcompute.server.errors import InvalidArgument
from medcompute.server.storage.usage import GROUPINGS, totals


def test_every_grouping_has_a_name_the_service_knows():
    assert grouping(jobs_pb2.USAGE_GROUPING_UNSPECIFIED) == "none"      # the default
    names = {grouping(v) for v in jobs_pb2.UsageGrouping.values()}
    assert names == set(GROUPINGS)
    with pytest.raises(InvalidArgument) as caught:
        grouping(99)
    assert caught.value.field == "group_by" and "USAGE_GROUPING_DAY" in caught.value.message


def test_a_usage_report_is_packed_with_the_requested_period():
    sums = {**totals([]), "jobs": 2, "deliveries": 1}
    record = {"job_id": "a1", "subscriber": "alice", "gpu_seconds": None, "not_a_field": 1}
    report = Usage(totals=sums, groups=[("alice", sums)], records=[record],
                   storage=[StorageUsage("alice", 1.5, 10)])
    reply = usage_response(report, 5.0, 0.0)
    assert (reply.totals.jobs, reply.totals.deliveries) == (2, 1)
    assert [(g.key, g.totals.jobs) for g in reply.groups] == [("alice", 2)]
    [r] = reply.records
    assert r.job_id == "a1" and not r.HasField("gpu_seconds")
    [s] = reply.storage
    assert (s.subscriber, s.gigabyte_days, s.bytes_now) == ("alice", 1.5, 10)
    assert (reply.since, reply.until) == (5.0, 0.0)
