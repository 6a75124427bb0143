"""Reading status over gRPC with real API keys, a real server and a Dask worker: the
operator's rules are enforced on Store.Get, status changes are audited (without the
study's UIDs), refusals name the field, and a status can send a study to the cold tier."""

from __future__ import annotations

import json
import time

import grpc
import numpy as np
import pydicom
import pytest

from medcompute.client import Client, ServiceError
from medcompute.client.cli import main
from medcompute.client.store import StoreClient
from medcompute.server.config import ServerConfig
from medcompute.server.storage.keys import KeyStore
from tests import store_helpers as H

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture(scope="module")
def site(tmp_path_factory, server_thread):
    data = tmp_path_factory.mktemp("studies")
    keys = KeyStore(data)
    tokens = {}
    for name, subscriber, roles in [("admin", "operator", ["admin"]),
                                    ("hospital", "st-mary", ["store", "process"]),
                                    ("other", "north-clinic", ["store"])]:
        _, tokens[name] = keys.create(subscriber, roles)
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=1, gpu_workers=0,
                          statuses=("unread", "read", "reported", "archived"),
                          status_rules={"unread": ("original", "lossless"),
                                        "archived": ("lossless",)},
                          cold_dir=tmp_path_factory.mktemp("cold"),
                          cold_statuses=("archived",))
    with server_thread(config) as server:
        server.tokens = tokens
        yield server


def _store(site, who) -> StoreClient:
    return StoreClient(site.address, timeout=60, api_key=site.tokens[who])


def test_rules_follow_the_status_and_changes_are_audited(site):
    with _store(site, "hospital") as store:
        mr = store.register(H.MR)
        assert store.status(mr)["status"] == "unread"
        assert store.status(mr)["changed_at"] == 0
        with pytest.raises(ServiceError) as caught:
            store.get(mr, version="review")
        assert caught.value.code == PRECONDITION
        assert caught.value.details == (
            "version: the study is 'unread', which serves only original, lossless; version "
            "'review' is served once the study's status allows it")
        assert store.info(mr).versions == {}                 # refused before it was made
        with Client(site.address, timeout=60, api_key=site.tokens["hospital"]) as c:
            with pytest.raises(ServiceError) as caught:                # processing too
                c.process("id:" + mr.image_id + "@review", ["gaussian:sigma=1"])
            assert caught.value.code == PRECONDITION
            assert caught.value.details.startswith("header.input.version: the study is 'unread'")
        assert store.get(mr, version="lossless").version["lossless"]
        assert store.get(mr, dicom=True).files == [H.data_of("MR_small.dcm")]
        changed = store.set_status(mr, "read")
        assert changed == {"status": "read", "previous_status": "unread",
                           "allowed_versions": ["*"]}
        assert store.get(mr, version="review").version["name"] == "review"
        study_uid = pydicom.dcmread(H.MR).StudyInstanceUID
        by_uid = store.status("", study_instance_uid=study_uid)
        assert by_uid["status"] == "read" and by_uid["changed_by"] == "st-mary"
        assert by_uid["statuses"] == ["unread", "read", "reported", "archived"]
        fetched = site.call(site.running.store.fetches.examinations("st-mary", 0,
                                                                    time.time() + 1))
        assert fetched == {"st-mary": 1}      # several fetches of one examination (study)
    with Client(site.address, timeout=60, api_key=site.tokens["admin"]) as admin:
        entries = admin.audit(action="study.set_status")
    assert [(e.subscriber, e.object_id, e.outcome, e.detail) for e in entries] == [
        ("st-mary", mr.image_id, "OK", "status unread -> read")]
    with Client(site.address, timeout=60, api_key=site.tokens["admin"]) as admin:
        everything = admin.audit(limit=1000)
    assert not any(study_uid in (e.object_id + e.detail) for e in everything)


def test_status_refusals_name_the_field(site):
    with _store(site, "hospital") as store, _store(site, "other") as other:
        ct = store.register(H.CT)
        raw = store.register(np.zeros((4, 4), "uint8"))
        cases = [
            (lambda: store.set_status(ct, "lost"), grpc.StatusCode.INVALID_ARGUMENT,
             "status: expected one of unread, read, reported, archived; got 'lost'"),
            (lambda: other.set_status(ct, "read"), grpc.StatusCode.NOT_FOUND, "image_id:"),
            (lambda: store.status(raw), PRECONDITION, "image_id: this image has no Study"),
            (lambda: store.status(""), grpc.StatusCode.INVALID_ARGUMENT, "image_id: give"),
            (lambda: other.status("", study_instance_uid=pydicom.dcmread(H.CT).StudyInstanceUID),
             grpc.StatusCode.NOT_FOUND, "study_instance_uid: no stored image of this study"),
        ]
        for call, code, message in cases:
            with pytest.raises(ServiceError) as caught:
                call()
            assert caught.value.code == code
            assert caught.value.details.startswith(message), caught.value.details


def test_an_archived_study_goes_cold_and_serves_only_what_its_rule_allows(site, capsys):
    s = ("--server", site.address)
    with _store(site, "hospital") as store, _store(site, "admin") as admin:
        series = H.ct_series(2, patient="ARCHIVE")
        paths = []
        for k, part in enumerate(series):
            path = site.running.store.config.data_dir.parent / f"archive-{k}.dcm"
            path.write_bytes(part)
            paths.append(str(path))
        image = store.register(paths)
        assert main(["store", "status", image.image_id, "archived", "--api-key",
                     site.tokens["hospital"], *s]) == 0
        assert "unread -> archived; serves lossless" in capsys.readouterr().out
        store.get(image, version="lossless")
        report = admin.apply_tier_policy()
        assert image.image_id in report["image_ids"]
        assert store.info(image).tier == "cold"
        assert store.usage()[0]["tiers"]["cold"] > 0
        with pytest.raises(ServiceError) as caught:
            store.get(image, dicom=True)
        assert caught.value.code == PRECONDITION and "'original'" in caught.value.details
        lossless = store.get(image, version="lossless")       # served from cold
        assert [pydicom.dcmread(pydicom.filebase.DicomBytesIO(f)).pixel_array.tolist()
                for f in lossless.files] == \
            [pydicom.dcmread(pydicom.filebase.DicomBytesIO(p)).pixel_array.tolist()
             for p in series]
    with Client(site.address, timeout=60, api_key=site.tokens["admin"]) as admin:
        gets = [e for e in admin.audit(action="store.get", limit=1000)
                if e.object_id == image.image_id and e.outcome == "OK"]
    assert "served from the cold tier" in gets[-1].detail
    assert main(["store", "status", image.image_id, "--api-key", site.tokens["hospital"],
                 *s]) == 0
    assert "archived; serves lossless" in capsys.readouterr().out
    assert main(["store", "status", image.image_id, "--json", "--api-key",
                 site.tokens["hospital"], *s]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["allowed_versions"]) == ("archived", ["lossless"])
    assert main(["store", "tier", image.image_id, "hot", "--json", "--api-key",
                 site.tokens["hospital"], *s]) == 0
    moved = json.loads(capsys.readouterr().out)
    assert moved["tier"] == "hot" and moved["blobs_moved"] > 0
    assert main(["store", "tier-policy", "--dry-run", "--json", "--api-key",
                 site.tokens["admin"], *s]) == 0
    assert image.image_id in json.loads(capsys.readouterr().out)["image_ids"]
