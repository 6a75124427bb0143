"""Every refusal of an asynchronous submit (jobs/runner.py) checked before its request
is prepared: the idempotency key, the label, the destination, the pending-job limit.
Against a real catalog and key store; nothing runs (the service is never reached)."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.server.config import ServerConfig
from medcompute.server.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
)
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.requests import ProcessRequest, SubmitRequest
from medcompute.server.jobs.runner import JobRunner
from medcompute.server.storage.keys import KeyStore
from tests.jobs_helpers import submitted

pytestmark = pytest.mark.timeout(30)


def _refused(tmp_path, submit, error, *, setup=None, **config):
    async def main():
        catalog = Catalog(tmp_path, runner="r1")
        keys = KeyStore(tmp_path)
        try:
            runner = JobRunner(ServerConfig(data_dir=tmp_path, **config), None, catalog, keys)
            if setup is not None:
                await setup(catalog, keys)
            with pytest.raises(error) as info:
                await runner.submit(submit, None, subscriber="s")
            return info.value
        finally:
            keys.close()
            catalog.close()
    return asyncio.run(main())


@pytest.mark.parametrize("key", ["two words", "x" * 129, "naïve"])
def test_an_idempotency_key_that_is_not_printable_ascii_is_refused(tmp_path, key):
    err = _refused(tmp_path, SubmitRequest(ProcessRequest(), idempotency_key=key),
                   InvalidArgument)
    assert err.field == "header.idempotency_key"
    assert err.message == "expected 1 to 128 printable ASCII characters without spaces"


def test_a_label_over_256_characters_is_refused(tmp_path):
    err = _refused(tmp_path, SubmitRequest(ProcessRequest(), label="n" * 257), InvalidArgument)
    assert err.field == "header.label"
    assert err.message == "expected at most 256 characters, got 257"


def test_a_destination_not_allowed_is_refused_with_its_name_cut(tmp_path):
    err = _refused(tmp_path, SubmitRequest(ProcessRequest(), destination="north-clinic"),
                   PermissionDenied)
    assert err.field == "header.destination"
    assert err.message == ("this subscriber may not deliver to 'north-clinic': an "
                           "administrator allows it with `medcompute deliveries allow`")
    err = _refused(tmp_path, SubmitRequest(ProcessRequest(), destination="d" * 300),
                   PermissionDenied)
    assert "d" * 65 not in err.message and "'…" in err.message


def test_an_allowed_destination_without_a_receive_key_is_refused(tmp_path):
    async def setup(catalog, keys):
        await catalog.allow_delivery("s", "north-clinic")
        keys.create("north-clinic", "process")            # a key, but not to receive
        revoked, _ = keys.create("north-clinic", "receive")
        keys.revoke(revoked.key_id)                       # a receive key, but revoked

    err = _refused(tmp_path, SubmitRequest(ProcessRequest(), destination="north-clinic"),
                   FailedPrecondition, setup=setup)
    assert err.field == "header.destination"
    assert err.message == "'north-clinic' has no valid key with the receive role"


def test_a_subscriber_at_its_pending_job_limit_is_refused(tmp_path):
    async def setup(catalog, keys):
        await submitted(catalog, "j1")
        await submitted(catalog, "j2", queued=False)        # receiving counts too

    err = _refused(tmp_path, SubmitRequest(ProcessRequest()), ResourceExhausted, setup=setup,
                   max_pending_jobs=2)
    assert err.field is None                              # the subscriber's, no field's
    assert err.message == ("this subscriber has 2 jobs waiting or running, its limit "
                           "(max_pending_jobs=2); submit when some have ended")
