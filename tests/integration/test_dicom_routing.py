"""Routing rules: a series sent by dcmtk's storescu that matches runs as ordinary
asynchronous jobs (one per matching rule), listed in `medcompute jobs`, with the same
pixels as the same pipeline run through `medcompute process`."""

from __future__ import annotations

import io
import json
import os
import time

import grpc
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medcompute.client import Client
from medcompute.client.cli import main
from medcompute.client.client import ServiceError
from medcompute.proto.v1 import dicom_pb2, jobs_pb2
from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.registry import NodeRegistry
from tests.dicom_peers import storescu

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CT5N = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                    "98892001", "CT5N")


@pytest.fixture(scope="module")
def node(server_thread, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("routing-data")
    registry = NodeRegistry(data_dir)
    registry.add_ae_now("SCANNER", "local", "127.0.0.1")
    registry.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=1,
                          dicom_port=0, dicom_quiet_seconds=30.0,
                          dicom_complete_on_release=True)
    with server_thread(config) as running:
        yield running


@pytest.fixture
def client(node):
    with Client(node.address, timeout=60) as c:
        yield c


def _routed(client, series_uid, n_jobs, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for s in client.dicom.received_series():
            if s.series_instance_uid == series_uid and len(s.jobs) >= n_jobs:
                return s
        time.sleep(0.2)
    raise AssertionError("the series was not routed")


def _pixels(datasets) -> np.ndarray:
    ordered = sorted(datasets, key=lambda ds: int(ds.InstanceNumber))
    return np.stack([ds.pixel_array for ds in ordered])


def test_matching_rules_run_as_jobs_equal_to_process(node, client, capsys, tmp_path):
    server = ["--server", node.address]
    assert main(["dicom", "rule", "add", "--subscriber", "local", "--op", "gaussian:sigma=1",
                 "--modality", "CT", "--calling-ae", "SCANNER", "--label", "smooth", *server]) == 0
    smooth_rule = capsys.readouterr().out.strip()
    assert main(["dicom", "rule", "add", "--subscriber", "local", "--op", "mip:axis=0",
                 "--tag", "BodyPartExamined=*", "--output", "file", "--json", *server]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["subscriber"], shown["tags"], shown["output"]) == \
        ("local", {"BodyPartExamined": "*"}, "ROUTING_OUTPUT_DICOM_FILE")
    mip_rule = shown["rule_id"]
    # Rules that do not match start nothing.
    assert main(["dicom", "rule", "add", "--subscriber", "local", "--op", "gaussian:sigma=2",
                 "--modality", "MR", *server]) == 0
    assert main(["dicom", "rule", "add", "--subscriber", "local", "--op", "gaussian:sigma=2",
                 "--calling-ae", "OTHER", *server]) == 0
    assert main(["dicom", "rule", "list", *server]) == 0
    assert capsys.readouterr().out.count("local") == 4

    files = sorted(os.path.join(CT5N, f) for f in os.listdir(CT5N))
    done = storescu(node.running.dicom_port, files)
    assert done.returncode == 0, done.stderr
    series = _routed(client, pydicom.dcmread(files[0]).SeriesInstanceUID, 2)
    assert series.state == dicom_pb2.SERIES_STATE_COMPLETE and series.instances == 5
    jobs = {j.rule_id: j.job_id for j in series.jobs}
    assert set(jobs) == {smooth_rule, mip_rule}
    for job_id in jobs.values():
        assert client.wait(job_id).state == jobs_pb2.JOB_STATE_SUCCEEDED

    # Ordinary jobs: listed with their labels, fetched like any other.
    listed = {j.job_id: j.label for j in client.jobs().jobs}
    assert listed[jobs[smooth_rule]] == "smooth"
    derived = client.fetch(jobs[smooth_rule])
    assert len(derived.files) == 5
    got = _pixels(pydicom.dcmread(io.BytesIO(f)) for f in derived.files)
    # The same pipeline through `medcompute process`, written as a derived series.
    assert main(["process", CT5N, "--op", "gaussian:sigma=1", "-o", f"{tmp_path}/direct/",
                 "-q", *server]) == 0
    want = _pixels(pydicom.dcmread(p) for p in (tmp_path / "direct").iterdir())
    np.testing.assert_array_equal(got, want)
    (mip,) = client.fetch(jobs[mip_rule]).files
    assert pydicom.dcmread(io.BytesIO(mip)).ImageType[0] == "DERIVED"

    assert main(["dicom", "series", *server]) == 0
    out = capsys.readouterr().out
    assert "SCANNER" in out and jobs[smooth_rule] in out
    assert main(["jobs", *server]) == 0
    assert jobs[smooth_rule] in capsys.readouterr().out
    # Audited: one entry per job a rule started.
    entries = node.call(node.running.guard.audit.alist(action="dicom.route"))
    assert {e.object_id for e in entries} == set(jobs.values())
    assert all(e.outcome == "OK" and e.subscriber == "local" for e in entries)


@pytest.mark.parametrize(("change", "field"), [
    ({"ops": []}, "rule.process.pipeline"),
    ({"tags": {"NoSuchKeyword": "x"}}, "rule.tags"),
    ({"calling_ae": "BAD\\AE"}, "rule.calling_ae"),
    ({"subscriber": "not a name"}, "rule.subscriber"),
])
def test_bad_rules_are_refused_naming_the_field(client, change, field):
    args = {"subscriber": "local", "ops": ["gaussian:sigma=1"]}
    args.update(change)
    with pytest.raises(ServiceError) as err:
        client.dicom.create_rule(args.pop("subscriber"), args.pop("ops"), **args)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details.startswith(field + ":")


def test_deleting_an_unknown_rule_is_not_found(client):
    with pytest.raises(ServiceError) as err:
        client.dicom.delete_rule("nope")
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert "rule_id" in err.value.details


def test_a_series_routed_again_after_a_restart_starts_no_second_job(node, client):
    """Completed but not marked routed (a crash in between): recovery submits again with
    the same idempotency keys, so the same jobs come back."""
    before = {(s.series_instance_uid, j.rule_id, j.job_id)
              for s in client.dicom.received_series() for j in s.jobs}
    assert before, "the routing test above left routed series"
    registry = node.running.dicom.registry
    registry.db.run(lambda tx: tx.execute("UPDATE dicom_series SET routed = 0"))
    assert node.call(registry.unrouted())
    node.call(node.running.dicom.router.recover())
    assert node.call(registry.unrouted()) == []
    after = {(s.series_instance_uid, j.rule_id, j.job_id)
             for s in client.dicom.received_series() for j in s.jobs}
    assert after == before
