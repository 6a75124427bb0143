"""The job state machine, without I/O."""

import pytest

from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.states import State


def _job():
    return jobs.new_job(subscriber="local", operations=["gaussian"], inputs=["inline:8"],
                        device="cpu", created_at=100.0, job_id="j1")


def test_happy_path_sets_times_and_worker():
    job = _job()
    assert job.state is State.RECEIVING and job.destination == "local"
    job = jobs.apply(job, jobs.InputsReceived(101.0))
    assert job.state is State.QUEUED and job.queued_at == 101.0
    job = jobs.apply(job, jobs.Started(102.0, "tcp://w1"))
    assert job.state is State.RUNNING and job.worker == "tcp://w1"
    job = jobs.apply(job, jobs.Succeeded(103.0))
    assert job.state is State.SUCCEEDED and job.finished_at == 103.0
    assert job.state.terminal


@pytest.mark.parametrize("before", ["receiving", "queued", "running"])
def test_failure_and_cancellation_from_every_live_state(before):
    job = _job()
    if before in ("queued", "running"):
        job = jobs.apply(job, jobs.InputsReceived(1.0))
    if before == "running":
        job = jobs.apply(job, jobs.Started(2.0, "w"))
    failed = jobs.apply(job, jobs.Failed(3.0, "bad", "INVALID_ARGUMENT"))
    assert (failed.state, failed.error, failed.error_code) == (State.FAILED, "bad",
                                                                "INVALID_ARGUMENT")
    assert not failed.platform_fault
    cancelled = jobs.apply(job, jobs.Cancelled(3.0, "deadline"))
    assert cancelled.state is State.CANCELLED and cancelled.error_code == "CANCELLED"


@pytest.mark.parametrize("event", [jobs.Started(1.0, "w"), jobs.Succeeded(1.0)])
def test_events_out_of_order_are_refused(event):
    with pytest.raises(jobs.InvalidTransition):
        jobs.apply(_job(), event)


def test_terminal_states_accept_nothing():
    job = jobs.apply(_job(), jobs.Failed(1.0, "x", "INTERNAL", platform_fault=True))
    assert job.platform_fault
    for event in (jobs.InputsReceived(2.0), jobs.Cancelled(2.0, "x"), jobs.Succeeded(2.0)):
        with pytest.raises(jobs.InvalidTransition):
            jobs.apply(job, event)


def test_new_jobs_get_distinct_ids():
    a = jobs.new_job(subscriber="s", operations=[], inputs=[], device="auto", created_at=0)
    b = jobs.new_job(subscriber="s", operations=[], inputs=[], device="auto", created_at=0)
    assert a.id != b.id
