"""The catalog's refusal of an idempotency key reused for another request
(jobs/catalog.py), against a real SQLite catalog."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.server.errors import AlreadyExists
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from tests.jobs_helpers import new_job

pytestmark = pytest.mark.timeout(30)


def _request(sha: str) -> dict:
    return {"idempotency_key": "night-run-7", "request_sha256": sha, "header": b"request",
            "label": "", "destination": ""}


def test_a_key_reused_for_a_different_request_is_refused(tmp_path):
    async def main():
        catalog = Catalog(tmp_path, runner="r1")
        try:
            first, created = await catalog.create_request(new_job("j1"), _request("a" * 64))
            assert created
            await catalog.queue(jobs.apply(first, jobs.InputsReceived(11.0)), 16)
            again, created = await catalog.create_request(new_job("j2"), _request("a" * 64))
            assert (again.id, created) == ("j1", False)    # the same request: the same job
            with pytest.raises(AlreadyExists) as info:
                await catalog.create_request(new_job("j3"), _request("b" * 64))
            assert info.value.field == "header.idempotency_key"
            assert info.value.message == ("this key was used for a different request (job "
                                          "j1); use a new key for a new request")
            assert await catalog.get_job("j3") is None
        finally:
            catalog.close()
    asyncio.run(main())
