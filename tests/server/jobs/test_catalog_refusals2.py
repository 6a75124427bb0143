"""The catalog's refusal of an idempotency key whose first job is still receiving its
inputs (jobs/catalog.py), against a real SQLite catalog: the retry is told to come back,
and once the first upload has ended it gets that job."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.server.errors import Aborted
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from tests.jobs_helpers import new_job

pytestmark = pytest.mark.timeout(30)

REQUEST = {"idempotency_key": "night-run-7", "request_sha256": "a" * 64, "header": b"request",
           "label": "", "destination": ""}


def test_a_retry_while_the_first_upload_is_receiving_is_aborted(tmp_path):
    async def main():
        catalog = Catalog(tmp_path, runner="r1")
        try:
            first, created = await catalog.create_request(new_job("j1"), REQUEST)
            assert created and first.state is jobs.State.RECEIVING
            with pytest.raises(Aborted) as info:
                await catalog.create_request(new_job("j2"), REQUEST)
            assert info.value.field == "header.idempotency_key"
            assert info.value.message == ("job j1 with this key is still receiving its inputs; "
                                          "retry once that upload has ended")
            assert await catalog.get_job("j2") is None
            await catalog.queue(jobs.apply(first, jobs.InputsReceived(11.0)), 16)
            again, created = await catalog.create_request(new_job("j3"), REQUEST)
            assert (again.id, created) == ("j1", False)
        finally:
            catalog.close()
    asyncio.run(main())
