"""Storage offload: an Orthanc with a small MaximumStorageSize holds three studies of
different dates; registered as a source with its REST URL and a threshold, it is asked
for its capacity on the schedule and, being below the threshold, its oldest studies are
collected (oldest first, until the free capacity counting them as freed is above the
threshold), the newest not; nothing is fetched twice, nothing is deleted from it. A
source whose maximum is not known gets a state that says so. Bad settings are refused
naming the field."""

from __future__ import annotations

import time

import grpc
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medcompute.client import Client, exits
from medcompute.client.cli import main
from medcompute.client.client import ServiceError
from medcompute.server.config import ServerConfig
from tests.dicom_peers import Orthanc, free_port, storescu

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MIB = 1 << 20
DATES = ("20190301", "20200615", "20240101")    # the oldest first


@pytest.fixture(scope="module")
def node(server_thread, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("offload-data")
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=1,
                          dicom_port=0, dicom_quiet_seconds=1.0)
    with server_thread(config) as running:
        yield running


def _studies(folder):
    """Three one-slice studies of three patients, the newest first on the wire."""
    folder.mkdir()
    out = {}
    for i, date in enumerate(reversed(DATES)):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = f"OFFLOAD-{i}"
        ds.StudyDate, ds.StudyTime = date, "101500"
        path = folder / f"{date}.dcm"
        ds.save_as(path)
        out[date] = (path, ds.StudyInstanceUID, ds.SeriesInstanceUID)
    return out


def _state(c, name, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (src,) = [s for s in c.dicom.sources() if s.name == name]
        if src.capacity_state:
            return src
        time.sleep(0.2)
    raise AssertionError(f"the capacity of {name} was not checked")


def test_the_oldest_studies_are_collected_when_the_source_runs_low(node, tmp_path, capsys):
    me = ["MEDCOMPUTE", "127.0.0.1", node.running.dicom_port]
    studies = _studies(tmp_path / "studies")
    with Orthanc(tmp_path / "pacs", aet="SMALLPACS", modalities={"medcompute": me},
                 extra={"MaximumStorageSize": 1}) as pacs:
        done = storescu(pacs.dicom_port, [p for p, _, _ in studies.values()],
                        called="SMALLPACS")
        assert done.returncode == 0, done.stderr
        stats = pacs.rest("/statistics")
        used = int(stats["TotalDiskSize"])
        sizes = {}
        for date, (_, uid, _) in studies.items():
            (found,) = pacs.rest_post("/tools/lookup", uid)
            sizes[date] = int(pacs.rest(f"/studies/{found['ID']}/statistics")["DiskSize"])
        free = MIB - used
        # A threshold that the oldest study alone does not reach, the two oldest do.
        threshold = free + sizes[DATES[0]] + sizes[DATES[1]] / 2
        percent = 100 * threshold / MIB
        url = f"http://127.0.0.1:{pacs.http_port}"
        server = ["--server", node.address]
        # Orthanc 1.10 reports what it uses, not its maximum: without it, no guess.
        assert main(["dicom", "source", "add", "unknown-max", "--ae-title", "SMALLPACS",
                     "--host", "127.0.0.1", "--port", str(pacs.dicom_port), "--every", "1",
                     "--capacity-url", url, "--offload-below", "50%", *server]) == 0
        with Client(node.address, timeout=60) as c:
            src = _state(c, "unknown-max")
            c.dicom.delete_source("unknown-max")
        if "MaximumStorageSize" not in pacs.rest("/system"):
            assert src.capacity_state == (
                "capacity not known: the source reports what it uses but not its maximum "
                "storage: register it with capacity_max_mib; nothing collected")
        assert main(["dicom", "source", "add", "small-pacs", "--ae-title", "SMALLPACS",
                     "--host", "127.0.0.1", "--port", str(pacs.dicom_port), "--every", "1",
                     "--capacity-url", url, "--offload-below", f"{percent}%",
                     "--capacity-max-mib", "1", "--json", *server]) == 0
        capsys.readouterr()
        with Client(node.address, timeout=60) as c:
            src = _state(c, "small-pacs")
            c.dicom.delete_source("small-pacs")          # no further checks
            state = src.capacity_state
            assert state.startswith(f"free {free / MIB:.2f} MiB of 1.00 MiB: below "
                                    f"{percent:g}%: 2 oldest studies collected, 0 collected "
                                    "before; free once they are removed: "), state
            assert "still below" not in state
            assert src.capacity_checked_at > 0
            received = {s.series_instance_uid: s for s in c.dicom.received_series()}
            for date in DATES[:2]:
                assert studies[date][2] in received, date
            assert studies[DATES[2]][2] not in received
            # Nothing deleted from the source.
            assert pacs.rest("/statistics")["CountStudies"] == 3
            # Registered again: the two oldest count as freed and are not fetched again.
            c.dicom.register_source("small-pacs", "SMALLPACS", "127.0.0.1", pacs.dicom_port,
                                    every_seconds=1, capacity_url=url,
                                    offload_below_percent=percent, capacity_max_mib=1)
            again = _state(c, "small-pacs").capacity_state
            c.dicom.delete_source("small-pacs")
            assert "0 oldest studies collected, 2 collected before" in again, again
            assert len(c.dicom.received_series()) == len(received)


def test_an_unreachable_capacity_url_and_a_plenty_source(node, tmp_path):
    me = ["MEDCOMPUTE", "127.0.0.1", node.running.dicom_port]
    with Orthanc(tmp_path / "big", aet="BIGPACS", modalities={"medcompute": me}) as pacs, \
            Client(node.address, timeout=60) as c:
        c.dicom.register_source("big", "BIGPACS", "127.0.0.1", pacs.dicom_port,
                                every_seconds=1, capacity_url=f"http://127.0.0.1:{pacs.http_port}",
                                offload_below_mib=10, capacity_max_mib=1000)
        state = _state(c, "big").capacity_state
        c.dicom.delete_source("big")
        assert state == "free 1000.00 MiB of 1000.00 MiB: not below 10.00 MiB"
        c.dicom.register_source("gone", "BIGPACS", "127.0.0.1", pacs.dicom_port,
                                every_seconds=1, capacity_url=f"http://127.0.0.1:{free_port()}",
                                offload_below_percent=10, capacity_max_mib=1000)
        state = _state(c, "gone").capacity_state
        c.dicom.delete_source("gone")
        assert state.startswith("capacity not known: the capacity URL did not answer ("), state
        assert state.endswith("; nothing collected")
        # Low on capacity, but its DICOM port does not answer: said so, nothing collected.
        done = storescu(pacs.dicom_port, [get_testdata_file("CT_small.dcm")],
                        called="BIGPACS")
        assert done.returncode == 0, done.stderr
        c.dicom.register_source("mute", "BIGPACS", "127.0.0.1", free_port(), every_seconds=1,
                                capacity_url=f"http://127.0.0.1:{pacs.http_port}",
                                offload_below_percent=99.99, capacity_max_mib=1)
        state = _state(c, "mute").capacity_state
        c.dicom.delete_source("mute")
        assert state == ("the source could not be queried: the source 'mute' is unreachable "
                         "(Connection refused); nothing collected"), state


@pytest.mark.parametrize(("settings", "field"), [
    ({"offload_below_percent": 20}, "source.offload_below_percent"),
    ({"capacity_max_mib": 20}, "source.capacity_max_mib"),
    ({"capacity_url": "ftp://pacs:21", "offload_below_percent": 20}, "source.capacity_url"),
    ({"capacity_url": "http://pacs:8042"}, "source.offload_below_percent"),
    ({"capacity_url": "http://pacs:8042", "offload_below_percent": 20,
      "offload_below_mib": 5}, "source.offload_below_percent"),
    ({"capacity_url": "http://pacs:8042", "offload_below_percent": 150},
     "source.offload_below_percent"),
    ({"capacity_url": "http://pacs:8042", "offload_below_mib": 50, "capacity_max_mib": 20},
     "source.offload_below_mib"),
])
def test_bad_offload_settings_are_refused_naming_the_field(node, settings, field):
    with Client(node.address, timeout=60) as c:
        every = settings.pop("every_seconds", 60)
        with pytest.raises(ServiceError) as err:
            c.dicom.register_source("bad-offload", "PACS", "127.0.0.1", 104,
                                    every_seconds=every, **settings)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details.startswith(f"{field}:"), err.value.details
        assert "bad-offload" not in [s.name for s in c.dicom.sources()]


def test_offload_needs_a_schedule_and_a_threshold_that_parses(node, capsys):
    with Client(node.address, timeout=60) as c, pytest.raises(ServiceError) as err:
        c.dicom.register_source("bad-offload", "PACS", "127.0.0.1", 104,
                                capacity_url="http://pacs:8042", offload_below_percent=20)
    assert err.value.details.startswith("source.every_seconds:")
    assert main(["dicom", "source", "add", "bad", "--ae-title", "P", "--host", "127.0.0.1",
                 "--port", "104", "--capacity-url", "http://pacs:8042", "--every", "1m",
                 "--offload-below", "a lot", "--server", node.address]) == exits.USAGE
    assert "--offload-below: expected a percentage (20%) or MiB (500MiB)" in \
        capsys.readouterr().err
