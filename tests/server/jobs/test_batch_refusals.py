"""The refusals of a batch request checked whole before any image's job (jobs/batch.py),
against a real processing service and catalog; no image reaches a worker."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from medcompute.client.ops import parse_op
from medcompute.server.config import ServerConfig
from medcompute.server.errors import InvalidArgument, ResourceExhausted
from medcompute.server.jobs.batch import MAX_ITEMS, BatchProcessing
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.process import ProcessingService
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.storage.spool import ExpectedImage, Spool

pytestmark = pytest.mark.timeout(30)

TEMPLATE = ProcessRequest(pipeline=(parse_op("gaussian:sigma=1"),))


def _image(i: int, field: str = "") -> ExpectedImage:
    return ExpectedImage(field or f"inputs[{i}]", "raw", 128, (8, 8), np.dtype("<u2"))


def _refused(tmp_path, call, error):
    """The error ``await call(batch)`` raises, ``batch`` a BatchProcessing of a real
    processing service without a cluster."""
    async def main():
        catalog = Catalog(tmp_path)
        try:
            config = ServerConfig(data_dir=tmp_path, min_free_bytes=0)
            batch = BatchProcessing(ProcessingService(config, catalog, None, Spool(tmp_path)))
            with pytest.raises(error) as info:
                await call(batch)
            return info.value
        finally:
            catalog.close()
    return asyncio.run(main())


def test_a_batch_without_images_is_refused(tmp_path):
    err = _refused(tmp_path, lambda b: b.prepare(TEMPLATE, [], subscriber="s"),
                   InvalidArgument)
    assert err.field == "inputs"
    assert err.message == "expected at least one image"


def test_a_batch_over_the_image_limit_is_refused(tmp_path):
    images = [_image(i) for i in range(MAX_ITEMS + 1)]
    err = _refused(tmp_path, lambda b: b.prepare(TEMPLATE, images, subscriber="s"),
                   ResourceExhausted)
    assert err.field == "inputs"
    assert err.message == (f"the batch has {MAX_ITEMS + 1} images; this server accepts at "
                           f"most {MAX_ITEMS} per request")


def test_an_operand_sent_with_a_batch_instead_of_stored_is_refused(tmp_path):
    template = ProcessRequest(pipeline=(parse_op("subtract:operand=0"),),
                              operands=(_image(0, "operands[0].inline"),))
    err = _refused(tmp_path, lambda b: b.prepare(template, [_image(0)], subscriber="s"),
                   InvalidArgument)
    assert err.field == "operands[0]"
    assert err.message == ("in a batch the operands are shared by every image and must be "
                           "stored images (image_id); register it first (medcompute store "
                           "put)")
