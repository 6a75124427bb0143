"""Storage capacity with real API keys, a real server and a Dask worker: an administrator
allocates, a registration or a version beyond the allocation is refused with
RESOURCE_EXHAUSTED naming the exact numbers and leaves nothing behind, and `medcompute
store usage` shows allocated and used bytes per tier."""

from __future__ import annotations

import json
import re

import grpc
import pytest

from medcompute.client import ServiceError
from medcompute.client.cli import main
from medcompute.client.cli.capacity import parse_size
from medcompute.client.store import StoreClient
from medcompute.server.config import ServerConfig
from medcompute.server.storage.keys import KeyStore
from tests import store_helpers as H
from tests.postgres_peer import CATALOGS, catalog_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture(scope="module", params=CATALOGS)
def site(request, tmp_path_factory, server_thread):
    data = tmp_path_factory.mktemp("capacity")
    catalog = catalog_spec(request)
    keys = KeyStore(catalog or data)
    tokens = {}
    for name, subscriber, roles in [("admin", "operator", ["admin"]),
                                    ("hospital", "st-mary", ["store"]),
                                    ("other", "north-clinic", ["store"])]:
        _, tokens[name] = keys.create(subscriber, roles)
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=1, gpu_workers=0,
                          catalog=catalog)
    with server_thread(config) as server:
        server.tokens = tokens
        yield server


def _store(site, who) -> StoreClient:
    return StoreClient(site.address, timeout=60, api_key=site.tokens[who])


def _numbers(message: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+) bytes allocated, (\d+) used, (\d+) more needed", message)
    assert m, message
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def _blob_files(site) -> set[str]:
    return {p.name for p in site.running.store.blobs.root.rglob("*") if p.is_file()}


def test_registration_beyond_the_allocation_is_refused_exactly(site):
    with _store(site, "admin") as admin, _store(site, "hospital") as hospital:
        ct = hospital.register(H.CT)
        [row] = hospital.usage()
        assert row == {"subscriber": "st-mary", "allocated_bytes": None,
                       "used_bytes": ct.message.stored_bytes,
                       "tiers": {"hot": ct.message.stored_bytes}}
        used = row["used_bytes"]
        assert admin.set_capacity("st-mary", used)["allocated_bytes"] == used
        before = _blob_files(site)
        with pytest.raises(ServiceError) as caught:
            hospital.register(H.MR)
        assert caught.value.code == EXHAUSTED
        assert caught.value.details.startswith("header.image: over the subscriber's allocated")
        allocated, now, needed = _numbers(caught.value.details)
        assert (allocated, now) == (used, used)
        site.call(site.running.store.wait_idle())
        assert _blob_files(site) == before                    # nothing half-stored
        assert list(site.running.store.blobs.tmp.iterdir()) == []
        assert [i.image_id for i in hospital.find()] == [ct.image_id]
        assert hospital.register(H.CT).existing               # what is kept stays reachable
        admin.set_capacity("st-mary", used + needed)          # exactly enough
        mr = hospital.register(H.MR)
        assert mr.message.stored_bytes == needed
        assert hospital.usage()[0]["used_bytes"] == used + needed
        # a version is counted and refused the same way
        with pytest.raises(ServiceError) as caught:
            hospital.get(mr, version="review")
        assert caught.value.code == EXHAUSTED
        assert caught.value.details.startswith("version: over the subscriber's allocated")
        assert _numbers(caught.value.details)[:2] == (used + needed, used + needed)
        assert hospital.info(mr).versions == {}
        assert admin.set_capacity("st-mary", None)["allocated_bytes"] is None
        review = hospital.get(mr, version="review")
        assert hospital.usage()[0]["used_bytes"] == (used + needed
                                                     + int(review.version["stored_bytes"]))


def test_only_an_administrator_allocates_or_sees_everyone(site):
    with _store(site, "hospital") as hospital, _store(site, "admin") as admin:
        for call in (lambda: hospital.set_capacity("st-mary", 10**12),
                     lambda: hospital.usage(all_subscribers=True),
                     lambda: hospital.usage("north-clinic")):
            with pytest.raises(ServiceError) as caught:
                call()
            assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(ServiceError) as caught:
            admin.set_capacity("not a name", 5)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details.startswith("subscriber:")
        admin.set_capacity("north-clinic", 5 * 10**9)
        everyone = {r["subscriber"]: r for r in admin.usage(all_subscribers=True)}
        assert everyone["north-clinic"] == {"subscriber": "north-clinic",
                                            "allocated_bytes": 5 * 10**9, "used_bytes": 0,
                                            "tiers": {}}
        assert everyone["st-mary"]["used_bytes"] > 0


def test_store_usage_and_capacity_on_the_command_line(site, capsys):
    s = ("--server", site.address)
    assert main(["store", "capacity", "north-clinic", "2GB", "--api-key",
                 site.tokens["admin"], *s]) == 0
    assert "north-clinic: allocated 2.00 GB, used 0 B" in capsys.readouterr().out
    assert main(["store", "usage", "--api-key", site.tokens["other"], *s]) == 0
    assert capsys.readouterr().out.strip() == "north-clinic: allocated 2.00 GB, used 0 B (0.0%):" \
        " nothing"
    assert main(["store", "usage", "--all", "--json", "--api-key", site.tokens["admin"], *s]) == 0
    assert '"subscriber": "st-mary"' in capsys.readouterr().out
    assert main(["store", "capacity", "north-clinic", "3GB", "--json", "--api-key",
                 site.tokens["admin"], *s]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "subscriber": "north-clinic", "allocated_bytes": 3 * 10**9, "used_bytes": 0,
        "tiers": {}}
    assert parse_size("1.5TB") == 1_500_000_000_000 and parse_size("8GiB") == 8 << 30
    assert parse_size("unlimited") is None
    with pytest.raises(SystemExit):
        main(["store", "capacity", "north-clinic", "lots", *s])
    assert "expected a size such as 500MB" in capsys.readouterr().err
