"""Retention across versions and tiers, with a real server (a cold tier) and Dask workers:
purging an image removes every version of it on both tiers and the images derived from it
(processed from its cold files by a worker), leaving no blob, no ledger bytes and no
dangling reference; deleting an image deletes its derived images the same way."""

from __future__ import annotations

import time

import pytest

from medcompute.client import Client, ServiceError
from medcompute.proto.v1 import store_pb2
from medcompute.server.config import ServerConfig
from tests import store_helpers as H

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def site(tmp_path_factory, server_thread):
    data, cold = tmp_path_factory.mktemp("retention"), tmp_path_factory.mktemp("cold")
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=1, gpu_workers=0,
                          cold_dir=cold)
    with server_thread(config) as server:
        server.cold = cold
        yield server


def _files(folder) -> list:
    return [p for p in (folder / "blobs").glob("??/*") if p.is_file()]


def test_purge_reaches_every_version_tier_and_derived_image(site, tmp_path):
    with Client(site.address, timeout=120) as c:
        folder = tmp_path / "series"
        folder.mkdir()
        for k, part in enumerate(H.ct_series(2, patient="RETAIN")):
            (folder / f"IM{k}.dcm").write_bytes(part)
        source = c.store.register(folder, retention=1.0)
        c.store.get(source, version="lossless")
        c.store.get(source, version="review")
        assert c.store.move(source, "cold")["tier"] == "cold"
        first = c.process(source, ["gaussian:sigma=1"], store_result=True)    # from cold
        second = c.process("id:" + first.stored_image_id, ["edge:operator=sobel"],
                           store_result=True)
        c.store.get(first.stored_image_id, version="review")
        assert _files(site.cold) and _files(site.running.store.config.data_dir)
        time.sleep(1.1)
        report = c.store.purge()
        # only the source was expired; what was derived from it goes with it
        assert report["image_ids"] == [source.image_id, first.stored_image_id,
                                       second.stored_image_id]
        for image_id in report["image_ids"]:
            with pytest.raises(ServiceError) as caught:
                c.store.info(image_id)
            assert caught.value.code.name == "NOT_FOUND"
        assert _files(site.cold) == [] and _files(site.running.store.config.data_dir) == []
        assert c.store.usage()[0]["used_bytes"] == 0
        assert c.store.verify().get("problems", []) == []
        assert site.call(site.running.store.catalog.tiers()) == {}


def test_delete_takes_the_derived_images_along(site, tmp_path):
    with Client(site.address, timeout=120) as c:
        path = tmp_path / "base.dcm"
        path.write_bytes(H.ct_series(1, patient="BASE")[0])
        base = c.store.register(str(path))
        other = c.store.register(H.CT)
        derived = c.process(base, ["gaussian:sigma=1"], store_result=True).stored_image_id
        difference = c.process(other, ["subtract"], operands=["id:" + base.image_id],
                               store_result=True).stored_image_id
        assert c.store.info(difference).message.operand_image_ids == [base.image_id]
        reply = c.store._call(c.store._stub.Delete,
                              store_pb2.DeleteRequest(image_id=base.image_id))
        assert sorted(reply.derived_image_ids) == sorted([derived, difference])
        assert [i.image_id for i in c.store.find()] == [other.image_id]
        c.store.delete(other)
