"""The job state machine, without I/O."""

import asyncio
import errno

import pytest

from medcompute.server.errors import DeadlineExceeded, InvalidArgument, StorageFull, Unavailable
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
    failed = jobs.apply(job, jobs.Failure(3.0, jobs.Fault.CALLER, "bad", "INVALID_ARGUMENT"))
    assert (failed.state, failed.error, failed.error_code) == (State.FAILED, "bad",
                                                                "INVALID_ARGUMENT")
    assert not failed.platform_fault
    cancelled = jobs.apply(job, jobs.Failure(3.0, jobs.Fault.CANCELLED, "deadline"))
    assert cancelled.state is State.CANCELLED and cancelled.error_code == "CANCELLED"


@pytest.mark.parametrize("event", [jobs.Started(1.0, "w"), jobs.Succeeded(1.0)])
def test_events_out_of_order_are_refused(event):
    with pytest.raises(jobs.InvalidTransition):
        jobs.apply(_job(), event)


def test_terminal_states_accept_nothing():
    job = jobs.apply(_job(), jobs.Failure(1.0, jobs.Fault.INFRASTRUCTURE, "x", "INTERNAL"))
    assert job.platform_fault
    for event in (jobs.InputsReceived(2.0), jobs.Failure(2.0, jobs.Fault.CANCELLED, "x"),
                  jobs.Succeeded(2.0)):
        with pytest.raises(jobs.InvalidTransition):
            jobs.apply(job, event)


def test_new_jobs_get_distinct_ids():
    a = jobs.new_job(subscriber="s", operations=[], inputs=[], device="auto", created_at=0)
    b = jobs.new_job(subscriber="s", operations=[], inputs=[], device="auto", created_at=0)
    assert a.id != b.id


# -- events in, instructions out ---------------------------------------------------------
def _queued(**kw):
    job = jobs.new_job(subscriber="local", operations=["gaussian"], inputs=["inline:8"],
                       device="cpu", created_at=100.0, job_id="j1", **kw)
    return jobs.apply(job, jobs.InputsReceived(101.0))


def _running(**kw):
    return jobs.apply(_queued(**kw), jobs.Started(102.0, ""))


def test_admitting_a_new_job_persists_it_once():
    job = _job()
    same, todo = jobs.handle(job, jobs.Admitted(100.0))
    assert same is job and todo == [jobs.Persist(job)]
    with pytest.raises(jobs.InvalidTransition):
        jobs.handle(_queued(), jobs.Admitted(101.0))


def test_received_inputs_queue_the_job_with_its_bytes_and_launch_it():
    job, todo = jobs.handle(_job(), jobs.InputsReceived(101.0, bytes_in=640))
    assert job.state is State.QUEUED and job.queued_at == 101.0
    assert todo == [jobs.Persist(job, bytes_in=640), jobs.Launch("j1"), jobs.Notify()]


def test_a_start_is_persisted_and_told():
    job, todo = jobs.handle(_queued(), jobs.Started(102.0, "tcp://w"))
    assert (job.state, job.started_at, job.worker) == (State.RUNNING, 102.0, "tcp://w")
    assert todo == [jobs.Persist(job), jobs.Notify()]


def test_a_success_records_its_end_keeps_the_result_and_drops_the_inputs():
    job, todo = jobs.handle(_running(), jobs.Succeeded(103.0))
    assert job.state is State.SUCCEEDED and job.finished_at == 103.0
    assert todo == [jobs.RecordEnd(job, State.SUCCEEDED), jobs.RemoveFiles("j1", inputs=True),
                    jobs.Notify()]


def test_an_end_recorded_by_the_run_is_followed_up_not_recorded_again():
    ended = jobs.apply(_running(), jobs.Succeeded(103.0))
    same, todo = jobs.handle(ended, jobs.EndRecorded(104.0))
    assert same is ended
    assert todo == [jobs.RemoveFiles("j1", inputs=True), jobs.Notify()]
    failed = jobs.apply(_running(), jobs.Failure(103.0, jobs.Fault.INFRASTRUCTURE, "x",
                                                 "INTERNAL"))
    assert jobs.handle(failed, jobs.EndRecorded(104.0))[1][0] == jobs.RemoveFiles(
        "j1", inputs=True, result=True)
    with pytest.raises(jobs.InvalidTransition):
        jobs.handle(_running(), jobs.EndRecorded(104.0))


def test_a_delivered_job_wakes_the_recipients_inbox():
    job, todo = jobs.handle(_running(destination="reader"), jobs.Succeeded(103.0))
    assert job.delivered and todo[-1] == jobs.NotifyRecipient("j1")
    assert not _running().delivered


@pytest.mark.parametrize("fault, state, code, platform", [
    (jobs.Fault.CALLER, State.FAILED, "INVALID_ARGUMENT", False),
    (jobs.Fault.INFRASTRUCTURE, State.FAILED, "UNAVAILABLE", True),
    (jobs.Fault.CANCELLED, State.CANCELLED, "CANCELLED", False),
    (jobs.Fault.DEADLINE, State.FAILED, "DEADLINE_EXCEEDED", False),
])
def test_failures_by_fault(fault, state, code, platform):
    given = {"INVALID_ARGUMENT": "INVALID_ARGUMENT", "UNAVAILABLE": "UNAVAILABLE"}.get(code, "")
    event = jobs.Failure(104.0, fault, "why", given, images=1, bytes_in=8)
    job, todo = jobs.handle(_running(), event)
    assert (job.state, job.error, job.error_code, job.platform_fault) == (state, "why", code,
                                                                          platform)
    assert todo == [jobs.RecordEnd(job, state, 1, 8),
                    jobs.RemoveFiles("j1", inputs=True, result=True), jobs.Notify()]


def test_an_infrastructure_failure_without_a_code_is_internal():
    job = jobs.apply(_running(), jobs.Failure(1.0, jobs.Fault.INFRASTRUCTURE, "disk"))
    assert job.error_code == "INTERNAL" and job.platform_fault


def test_a_failed_upload_removes_the_whole_job_folder():
    job, todo = jobs.handle(_job(), jobs.Failure(101.0, jobs.Fault.CANCELLED, "gone"))
    assert job.state is State.CANCELLED
    assert jobs.RemoveFiles("j1", folder=True) in todo


@pytest.mark.parametrize("code, platform, fault", [
    ("INVALID_ARGUMENT", False, jobs.Fault.CALLER),
    ("NOT_FOUND", False, jobs.Fault.CALLER),
    ("RESOURCE_EXHAUSTED", False, jobs.Fault.CALLER),
    ("RESOURCE_EXHAUSTED", True, jobs.Fault.INFRASTRUCTURE),     # a full disk
    ("INTERNAL", False, jobs.Fault.INFRASTRUCTURE),
    ("UNAVAILABLE", False, jobs.Fault.INFRASTRUCTURE),
    ("DEADLINE_EXCEEDED", False, jobs.Fault.DEADLINE),
])
def test_classify(code, platform, fault):
    assert jobs.classify(code, platform_fault=platform) is fault


# The exception a job ended with, classified (Process, batches and the runner alike).
@pytest.mark.parametrize("exc, fault, code", [
    (asyncio.CancelledError(), jobs.Fault.CANCELLED, ""),
    (InvalidArgument("bad", "header.x"), jobs.Fault.CALLER, "INVALID_ARGUMENT"),
    (DeadlineExceeded("late"), jobs.Fault.DEADLINE, "DEADLINE_EXCEEDED"),
    (Unavailable("gone"), jobs.Fault.INFRASTRUCTURE, "UNAVAILABLE"),
    (StorageFull("full"), jobs.Fault.INFRASTRUCTURE, "RESOURCE_EXHAUSTED"),
    (OSError(errno.ENOSPC, "full"), jobs.Fault.INFRASTRUCTURE, "RESOURCE_EXHAUSTED"),
    (ValueError("boom"), jobs.Fault.INFRASTRUCTURE, "INTERNAL"),
])
def test_failure_classifies_the_exception(exc, fault, code):
    event = jobs.failure(exc, at=1.0, reason="why", images=1, bytes_in=2)
    assert (event.fault, event.code, event.images, event.bytes_in) == (fault, code, 1, 2)
    if fault is jobs.Fault.CANCELLED:
        assert event.reason == "why"
    if isinstance(exc, ValueError):
        assert event.reason == "internal error (ValueError)"
    if isinstance(exc, InvalidArgument):
        assert event.reason == "header.x: bad"


def test_a_cancel_request_stops_a_live_run_and_is_nothing_once_ended():
    for job in (_job(), _queued(), _running()):
        same, todo = jobs.handle(job, jobs.CancelRequested(5.0, "stop"))
        assert same is job and todo == [jobs.CancelRun("j1", "stop"), jobs.Notify()]
    ended = jobs.apply(_running(), jobs.Succeeded(103.0))
    assert jobs.handle(ended, jobs.CancelRequested(5.0)) == (ended, [])


@pytest.mark.parametrize("attempts", [1, jobs.MAX_ATTEMPTS - 1])
def test_a_taken_over_job_with_stored_inputs_runs_again(attempts):
    for job in (_queued(), _running()):
        same, todo = jobs.handle(job, jobs.TakenOver(200.0, attempts))
        assert same is job and todo == [jobs.Launch("j1")]


def test_a_job_taken_over_while_receiving_fails_with_the_reason():
    job, todo = jobs.handle(_job(), jobs.TakenOver(200.0, 1, bytes_in=4, images=1))
    assert (job.state, job.error_code, job.platform_fault) == (State.FAILED, "UNAVAILABLE",
                                                               True)
    assert "while receiving the inputs" in job.error
    assert todo[0] == jobs.RecordEnd(job, State.FAILED, 1, 4)
    assert jobs.RemoveFiles("j1", folder=True) in todo


def test_a_job_interrupted_too_often_is_not_run_again():
    job, todo = jobs.handle(_running(), jobs.TakenOver(200.0, jobs.MAX_ATTEMPTS, bytes_in=4))
    assert job.state is State.FAILED and f"interrupted {jobs.MAX_ATTEMPTS} times" in job.error
    assert not [i for i in todo if isinstance(i, jobs.Launch)]
    assert todo[0] == jobs.RecordEnd(job, State.FAILED, 0, 4)


def test_a_synchronous_calls_job_taken_over_fails_unbilled_for_its_bytes():
    job, todo = jobs.handle(_running(), jobs.TakenOver(200.0, 1, asynchronous=False,
                                                       bytes_in=4))
    assert job.state is State.FAILED and "stopped before the job ended" in job.error
    assert todo[0] == jobs.RecordEnd(job, State.FAILED, 0, 0)


def test_an_expired_result_is_removed_once_the_job_has_ended():
    ended = jobs.apply(_running(), jobs.Succeeded(103.0))
    assert jobs.handle(ended, jobs.ResultExpired(999.0)) == (
        ended, [jobs.RemoveFiles("j1", folder=True), jobs.MarkResultRemoved("j1")])
    with pytest.raises(jobs.InvalidTransition):
        jobs.handle(_running(), jobs.ResultExpired(999.0))


@pytest.mark.parametrize("state, refused", [
    ("receiving", [jobs.Started(1.0, ""), jobs.Succeeded(1.0), jobs.ResultExpired(1.0)]),
    ("queued", [jobs.InputsReceived(1.0), jobs.Succeeded(1.0), jobs.Admitted(1.0)]),
    ("running", [jobs.InputsReceived(1.0), jobs.Started(1.0, ""), jobs.Admitted(1.0)]),
    ("ended", [jobs.InputsReceived(1.0), jobs.Started(1.0, ""), jobs.Succeeded(1.0),
               jobs.Failure(1.0, jobs.Fault.CALLER, "x"), jobs.TakenOver(1.0, 1),
               jobs.Admitted(1.0)]),
])
def test_refused_transitions(state, refused):
    job = {"receiving": _job, "queued": _queued, "running": _running,
           "ended": lambda: jobs.apply(_running(), jobs.Succeeded(3.0))}[state]()
    for event in refused:
        with pytest.raises(jobs.InvalidTransition):
            jobs.handle(job, event)


@pytest.mark.parametrize("before", ["receiving", "queued", "running"])
def test_a_job_answered_from_the_store_succeeds_without_running(before):
    job = {"receiving": _job, "queued": _queued, "running": _running}[before]()
    done, todo = jobs.handle(job, jobs.AnsweredFromStore(150.0, 151.0))
    assert (done.state, done.finished_at) == (State.SUCCEEDED, 151.0)
    assert done.queued_at == (150.0 if before == "receiving" else 101.0)
    assert done.started_at == (102.0 if before == "running" else 150.0)
    assert todo[0] == jobs.RecordEnd(done, State.SUCCEEDED)
    with pytest.raises(jobs.InvalidTransition):
        jobs.handle(done, jobs.AnsweredFromStore(152.0, 153.0))
