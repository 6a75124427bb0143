"""Stopping a cancelled job inside a kernel (worker/cancel.py); the restart itself is
tested over a real cluster in tests/integration/test_worker_memory.py."""

import logging

from medcompute.server.worker import cancel


def test_a_cancelled_job_still_running_outside_a_nanny_is_left_to_finish(caplog):
    with cancel.running("job-abandoned"):
        with caplog.at_level(logging.WARNING, logger=cancel.__name__):
            cancel.stop_abandoned(["job-abandoned", "job-finished"], None)
        assert "without a nanny" in caplog.text and "job-abandoned" in caplog.text
    caplog.clear()
    cancel.stop_abandoned(["job-abandoned"], None)    # finished meanwhile: nothing to do
    assert caplog.text == ""


def test_a_job_is_running_only_inside_its_block():
    with cancel.running("job-1"):
        assert "job-1" in cancel.RUNNING
    assert "job-1" not in cancel.RUNNING


def test_a_broken_gpu_worker_without_a_nanny_says_it_cannot_restart(caplog):
    # With a nanny the process leaves (its nanny starts a new one): tests/integration.
    import asyncio
    from types import SimpleNamespace

    from medcompute.server.worker import cancel as cancel_module

    with caplog.at_level("ERROR"):
        asyncio.run(cancel_module.restart_broken("its device context is broken",
                                                 dask_worker=SimpleNamespace(nanny=None)))
    assert "without a nanny this worker cannot be restarted" in caplog.text
