"""Collect from a sender's PACS: an Orthanc holding studies is queried by C-FIND and
its matching series retrieved by C-MOVE (Orthanc calls back this server's storage SCP)
and by C-GET; a series collected once is not fetched again; collected series are
routed like received ones."""

from __future__ import annotations

import json
import os
import time

import grpc
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medcompute.client import Client, exits
from medcompute.client.cli import main
from medcompute.client.client import ServiceError
from medcompute.proto.v1 import dicom_pb2
from medcompute.server.config import ServerConfig
from tests.dicom_peers import Orthanc, storescu

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CT5N = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                    "98892001", "CT5N")


@pytest.fixture(scope="module")
def node(server_thread, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("collect-data")
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=1,
                          dicom_port=0, dicom_quiet_seconds=1.0)
    with server_thread(config) as running:
        yield running


@pytest.fixture(scope="module")
def pacs(node, tmp_path_factory):
    me = ["MEDCOMPUTE", "127.0.0.1", node.running.dicom_port]
    with Orthanc(tmp_path_factory.mktemp("pacs"), aet="HOSPITALPACS",
                 modalities={"medcompute": me}) as pacs:
        files = [os.path.join(CT5N, f) for f in sorted(os.listdir(CT5N))]
        done = storescu(pacs.dicom_port, [*files, get_testdata_file("CT_small.dcm")],
                        called="HOSPITALPACS")
        assert done.returncode == 0, done.stderr
        yield pacs


def _complete(client, series_uid, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for s in client.dicom.received_series():
            if (s.series_instance_uid == series_uid
                    and s.state == dicom_pb2.SERIES_STATE_COMPLETE):
                return s
        time.sleep(0.2)
    raise AssertionError("the collected series did not complete")


def test_collect_by_move_then_not_again(node, pacs, capsys):
    server = ["--server", node.address]
    assert main(["dicom", "source", "add", "pacs", "--ae-title", "HOSPITALPACS", "--host",
                 "127.0.0.1", "--port", str(pacs.dicom_port), *server]) == 0
    with Client(node.address, timeout=60) as c:
        # A study date no study has: nothing found.
        out = c.dicom.collect("pacs", date_from="30000101")
        assert (out.series_found, out.series_retrieved) == (0, 0)
        out = c.dicom.collect("pacs", modality="CT")
        assert (out.series_found, out.series_skipped, out.series_retrieved) == (2, 0, 2)
        assert out.instances_retrieved == 6 and not out.failures
        ct5n = _complete(c, pydicom.dcmread(os.path.join(CT5N, "2062")).SeriesInstanceUID)
        assert ct5n.calling_ae == "HOSPITALPACS" and ct5n.instances == 5
        volume = c.store.get(ct5n.image_id)
        assert volume.array.shape[0] == 5
    # Collected before: not fetched again.
    assert main(["collect", "pacs", "--modality", "CT", *server]) == 0
    assert "2 series found, 2 collected before, 0 retrieved" in capsys.readouterr().out
    assert main(["collect", "pacs", "--modality", "CT", "--json", *server]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["series_found"], out["series_skipped"], out["series_retrieved"]) == (2, 2, 0)


def test_collect_by_get_and_routing(node, pacs):
    with Client(node.address, timeout=60) as c:
        c.dicom.register_source("pacs-get", "HOSPITALPACS", "127.0.0.1", pacs.dicom_port,
                                method="get")
        done = storescu(pacs.dicom_port, [get_testdata_file("MR_small.dcm")],
                        called="HOSPITALPACS")
        assert done.returncode == 0, done.stderr
        rule = c.dicom.create_rule("local", ["gaussian:sigma=1"], modality="MR",
                                   calling_ae="HOSPITALPACS")
        try:
            out = c.dicom.collect("pacs-get", modality="MR")
            assert (out.series_found, out.series_retrieved, out.instances_retrieved) == (
                1, 1, 1)
            uid = pydicom.dcmread(get_testdata_file("MR_small.dcm")).SeriesInstanceUID
            series = _complete(c, uid)
            deadline = time.monotonic() + 30
            while not series.jobs:
                assert time.monotonic() < deadline, "the collected series started no job"
                time.sleep(0.2)
                series = _complete(c, uid)
            assert [j.rule_id for j in series.jobs] == [rule.rule_id]
        finally:
            c.dicom.delete_rule(rule.rule_id)
        assert c.dicom.collect("pacs-get", modality="MR").series_skipped == 1


def test_collect_errors_name_the_field(node, pacs):
    with Client(node.address, timeout=30) as c:
        with pytest.raises(ServiceError) as err:
            c.dicom.collect("nowhere")
        assert err.value.code == grpc.StatusCode.NOT_FOUND
        assert err.value.details.startswith("source:")
        with pytest.raises(ServiceError) as err:
            c.dicom.collect("nowhere", date_from="yesterday")
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details.startswith("date_from:")
        with pytest.raises(ServiceError) as err:
            c.dicom.register_source("bad", "PACS", "127.0.0.1", 70000)
        assert err.value.details.startswith("source.port:")


def test_a_scheduled_source_collects_new_series_only(node, pacs, tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(tmp_path / "new.dcm")
    done = storescu(pacs.dicom_port, [tmp_path / "new.dcm"], called="HOSPITALPACS")
    assert done.returncode == 0, done.stderr
    assert main(["dicom", "source", "add", "nightly", "--ae-title", "HOSPITALPACS", "--host",
                 "127.0.0.1", "--port", str(pacs.dicom_port), "--method", "get", "--every",
                 "1", "--schedule-modality", "CT", "--server", node.address]) == 0
    with Client(node.address, timeout=60) as c:
        _complete(c, ds.SeriesInstanceUID)
        (nightly,) = [s for s in c.dicom.sources() if s.name == "nightly"]
        assert nightly.every_seconds == 1 and nightly.last_run_at > 0
        # Every CT series of that PACS is collected now, by this source or another.
        out = c.dicom.collect("nightly", modality="CT")
        assert (out.series_found, out.series_skipped, out.series_retrieved) == (3, 3, 0)
        # Registered again without a schedule: it stops.
        c.dicom.register_source("nightly", "HOSPITALPACS", "127.0.0.1", pacs.dicom_port,
                                method="get")
        (nightly,) = [s for s in c.dicom.sources() if s.name == "nightly"]
        assert nightly.every_seconds == 0


def test_a_source_is_removed_and_then_unknown(node, pacs, capsys):
    server = ["--server", node.address]
    assert main(["dicom", "source", "add", "short-lived", "--ae-title", "HOSPITALPACS",
                 "--host", "127.0.0.1", "--port", str(pacs.dicom_port), *server]) == 0
    capsys.readouterr()
    assert main(["dicom", "source", "rm", "short-lived", "--json", *server]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": "short-lived", "removed": True}
    with Client(node.address, timeout=60) as c:
        assert "short-lived" not in [s.name for s in c.dicom.sources()]
        with pytest.raises(ServiceError) as err:
            c.dicom.collect("short-lived")
        assert err.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(ServiceError) as err:
            c.dicom.delete_source("short-lived")
        assert err.value.code == grpc.StatusCode.NOT_FOUND
        assert err.value.details.startswith("name:")
        # A source opens no door: its AE title was never a calling AE, and none is left.
        assert "HOSPITALPACS" not in [a.ae_title for a in c.dicom.calling_aes()]
    assert main(["dicom", "source", "rm", "short-lived", *server]) == exits.NOT_FOUND
    assert "name: no source 'short-lived'" in capsys.readouterr().err


def test_a_source_that_rejects_the_association_says_why(node, tmp_path):
    with Orthanc(tmp_path / "strict", aet="STRICTPACS", check_called_aet=True) as strict, \
            Client(node.address, timeout=60) as c:
        c.dicom.register_source("strict", "NOTSTRICT", "127.0.0.1", strict.dicom_port)
        with pytest.raises(ServiceError) as err:
            c.dicom.collect("strict")
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        assert err.value.details == (
            "source: the source 'strict' did not accept an association (association "
            "rejected (permanent): called AE title not recognised)")
        c.dicom.delete_source("strict")
