"""A job as its subscriber sees it, from its catalog rows."""

import pytest

from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.views import DeliveryState, job_view


def _job(destination=None):
    job = jobs.new_job(subscriber="s", operations=["gaussian"], inputs=["inline:8"],
                       device="cpu", created_at=10.0, job_id="j1", destination=destination)
    return jobs.apply(jobs.apply(job, jobs.InputsReceived(11.0)), jobs.Started(12.0, "w"))


@pytest.mark.parametrize("destination, ended, delivery, expected", [
    (None, False, None, DeliveryState.NONE),
    ("reader", False, None, DeliveryState.PENDING),
    ("reader", True, None, DeliveryState.FAILED),
    ("reader", True, {"delivered_at": 14.0, "fetched_at": None}, DeliveryState.DELIVERED),
    ("reader", True, {"delivered_at": 14.0, "fetched_at": 15.0}, DeliveryState.FETCHED),
])
def test_delivery_states(destination, ended, delivery, expected):
    job = _job(destination)
    if ended:
        job = jobs.apply(job, jobs.Succeeded(13.0))
    view = job_view(job, {"label": ""}, delivery)
    assert view.delivery is expected
    assert view.destination == (destination or "")
    if delivery is not None:
        assert (view.delivered_at, view.fetched_at) == (14.0, delivery["fetched_at"] or 0.0)


def test_a_result_is_available_until_it_is_removed():
    done = jobs.apply(_job(), jobs.Succeeded(13.0))
    assert job_view(done, {"result_path": "/r"}).result_available
    assert not job_view(done, {"result_path": "/r", "result_removed_at": 20.0}).result_available
    assert not job_view(done, None).result_available              # a synchronous call
    assert not job_view(_job(), {"result_path": "/r"}).result_available


def test_a_synchronous_calls_job_and_its_progress():
    view = job_view(_job(), None, None, 0.4)
    assert not view.asynchronous and view.progress == 0.4 and view.started_at == 12.0
    assert (view.label, view.idempotency_key, view.queued_at, view.finished_at) == (
        "", "", 11.0, 0.0)
    assert job_view(jobs.apply(_job(), jobs.Succeeded(13.0)), None, None, 0.4).progress == 1.0
