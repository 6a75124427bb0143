"""The refusals of the billing service (billing/service.py, billing/invoices.py): whose
usage a caller may see, and the period or month it names."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.server.billing.invoices import month_bounds
from medcompute.server.billing.service import BillingService, scope
from medcompute.server.errors import InvalidArgument, PermissionDenied
from medcompute.server.storage.keys import Principal

pytestmark = pytest.mark.timeout(30)

ADMIN = Principal("ops", frozenset({"admin"}))
CLINIC = Principal("clinic-a", frozenset({"process"}))


@pytest.mark.parametrize("who, subscriber, every, error, field, words", [
    (ADMIN, "clinic-a", True, InvalidArgument, "all_subscribers",
     "give either a subscriber or all_subscribers, not both"),
    (CLINIC, "", True, PermissionDenied, "all_subscribers",
     "the usage of every subscriber needs the admin role; leave all_subscribers unset to "
     "see your own"),
    (CLINIC, "clinic-b", False, PermissionDenied, "subscriber",
     "another subscriber's usage needs the admin role; leave subscriber empty to see your "
     "own"),
])
def test_whose_usage_a_caller_may_see(who, subscriber, every, error, field, words):
    with pytest.raises(error) as caught:
        scope(who, subscriber, every)
    assert caught.value.field == field and caught.value.message == words
    assert scope(ADMIN, subscriber, False) == (subscriber or "ops")


@pytest.fixture
def billing(tmp_path):
    service = BillingService(tmp_path)
    yield service
    service.close()


@pytest.mark.parametrize("since, until, field, words", [
    (-1.0, 0.0, "since", "expected unix seconds (0 for unbounded), got -1.0"),
    (0.0, float("nan"), "until", "expected unix seconds (0 for unbounded), got nan"),
    (2000.0, 1000.0, "until", "expected a time after since (2000.0), got 1000.0"),
])
def test_a_usage_period_that_is_not_one_is_refused(billing, since, until, field, words):
    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(billing.usage(CLINIC, since=since, until=until))
    assert caught.value.field == field and caught.value.message == words


def test_a_grouping_the_service_has_not_is_refused(billing):
    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(billing.usage(CLINIC, group_by="week"))
    assert caught.value.field == "group_by"
    assert caught.value.message == ("expected one of none, day, operation, device, "
                                    "subscriber, got 'week'")


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "1969-12", "Nov 2026", ""])
def test_a_month_that_is_not_yyyy_mm_is_refused(billing, month):
    with pytest.raises(InvalidArgument) as caught:
        month_bounds(month)
    assert caught.value.field == "month"
    assert caught.value.message == ("expected a month as YYYY-MM (UTC), e.g. 2026-11, got "
                                    f"{month!r}")
    with pytest.raises(InvalidArgument, match="YYYY-MM"):
        asyncio.run(billing.invoice(CLINIC, month))
