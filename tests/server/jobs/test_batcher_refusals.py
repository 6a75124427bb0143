"""The dynamic batcher's refusal of a call over its subscriber's queue limit
(jobs/batcher.py), before any job exists; a place given back is free again."""

from __future__ import annotations

import pytest

from medcompute.server.config import ServerConfig
from medcompute.server.errors import ResourceExhausted
from medcompute.server.jobs.batcher import DynamicBatcher
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.process import ProcessingService
from medcompute.server.storage.spool import Spool

pytestmark = pytest.mark.timeout(30)


def test_a_call_over_the_subscribers_batch_queue_is_refused(tmp_path):
    catalog = Catalog(tmp_path)
    try:
        config = ServerConfig(data_dir=tmp_path, batch_queue=2)
        batcher = DynamicBatcher(ProcessingService(config, catalog, None, Spool(tmp_path)))
        releases = [batcher._admit("st-mary") for _ in range(2)]
        batcher._admit("north-clinic")                  # another subscriber's own queue
        with pytest.raises(ResourceExhausted) as info:
            batcher._admit("st-mary")
        assert info.value.field is None                 # the subscriber's limit, no field's
        assert info.value.message == ("this subscriber has 2 Process calls waiting to be "
                                      "batched, its limit (batch_queue=2); retry when some "
                                      "have ended")
        releases[0]()
        releases[0]()                                   # given back once only
        assert batcher.queued["st-mary"] == 1
        batcher._admit("st-mary")
    finally:
        catalog.close()
