"""The refusal of a batch submit's idempotency key too long to key each image's job
(jobs/batch_submit.py), before any image is prepared."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from medcompute.client.ops import parse_op
from medcompute.server.config import ServerConfig
from medcompute.server.errors import InvalidArgument
from medcompute.server.jobs.batch import BatchProcessing
from medcompute.server.jobs.batch_submit import BatchSubmit
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.process import ProcessingService
from medcompute.server.jobs.requests import ProcessRequest, SubmitRequest
from medcompute.server.storage.spool import ExpectedImage, Spool

pytestmark = pytest.mark.timeout(30)


def test_a_batch_submit_key_too_long_to_key_each_image_is_refused(tmp_path):
    submit = SubmitRequest(ProcessRequest(pipeline=(parse_op("gaussian:sigma=1"),)),
                           idempotency_key="k" * 121)
    image = ExpectedImage("inputs[0]", "raw", 128, (8, 8), np.dtype("<u2"))

    async def main():
        catalog = Catalog(tmp_path)
        try:
            config = ServerConfig(data_dir=tmp_path, min_free_bytes=0)
            batch = BatchProcessing(ProcessingService(config, catalog, None, Spool(tmp_path)))
            with pytest.raises(InvalidArgument) as info:
                await BatchSubmit(batch, runner=None).submit(submit, [image], None,
                                                             subscriber="s")
            return info.value
        finally:
            catalog.close()

    err = asyncio.run(main())
    assert err.field == "idempotency_key"
    assert err.message == ("expected at most 120 characters in a batch (each image's job "
                           "is keyed KEY#i), got 121")
