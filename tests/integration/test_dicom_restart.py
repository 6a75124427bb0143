"""`medcompute serve --dicom-port` killed with SIGKILL mid-association and mid-delivery:
no instance acknowledged with success is lost, and a push interrupted while sending is
delivered by the next server of the same data directory."""

from __future__ import annotations

import io
import os
import subprocess
import time

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medcompute.client import Client
from medcompute.proto.v1 import dicom_pb2
from medcompute.server.dicomnet.registry import NodeRegistry
from tests.dicom_peers import StoreSCP, free_port, program, storescu
from tests.served import Served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CT5N = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                    "98892001", "CT5N")


def _registered(data):
    registry = NodeRegistry(data)
    registry.add_ae_now("SCANNER", "local", "127.0.0.1")
    registry.close()


def _until(check, timeout=60, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def _series_files(folder, n):
    """``n`` CT instances of one new series (pydicom's CT slice, restacked); its UID."""
    folder.mkdir()
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series_uid = generate_uid()
    for i in range(n):
        ds = template.copy()
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, generate_uid()
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(i)]
        ds.save_as(folder / f"{i:04d}.dcm")
    return series_uid, sorted(folder.iterdir())


def test_sigkill_mid_association_loses_no_acknowledged_instance(tmp_path):
    data, port = tmp_path / "data", free_port()
    _registered(data)
    dicom = ("--dicom-port", str(port), "--series-quiet", "1")
    series_uid, files = _series_files(tmp_path / "series", 120)
    server = Served(data, tmp_path / "first.log", *dicom)
    acked: list[str] = []
    try:
        # dcmtk's storescu -v logs each file it sends and each response it gets.
        with subprocess.Popen(
                [program("storescu"), "-v", "-aet", "SCANNER", "-aec", "MEDCOMPUTE",
                 "127.0.0.1", str(port), *map(str, files)], stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True) as sender:
            sending = None
            for line in sender.stderr:
                if line.startswith("I: Sending file: "):
                    sending = line.removeprefix("I: Sending file: ").strip()
                elif "Received Store Response (Success)" in line:
                    acked.append(pydicom.dcmread(sending).SOPInstanceUID)
                    if len(acked) == 3:
                        server.kill()        # mid-association: more files are on their way
            sender.wait(30)
    finally:
        if server.proc.poll() is None:
            server.kill()
    assert 3 <= len(acked) < len(files)
    server = Served(data, tmp_path / "second.log", *dicom)
    try:
        with Client(server.address, timeout=60) as c:
            done = _until(lambda: [s for s in c.dicom.received_series()
                                   if s.series_instance_uid == series_uid
                                   and s.state == dicom_pb2.SERIES_STATE_COMPLETE],
                          what="the series' completion after the restart")
            kept_files = c.store.get(done[0].image_id, dicom=True).files
        kept = {pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID for f in kept_files}
        assert set(acked) <= kept
    finally:
        server.stop()


def test_sigkill_mid_delivery_ends_delivered_after_restart(tmp_path):
    data, port = tmp_path / "data", free_port()
    _registered(data)
    # A push a killed server was sending is sent again once its lease (--job-lease) ran out.
    dicom = ("--dicom-port", str(port), "--complete-on-release", "--push-backoff", "0.5",
             "--job-lease", "2")
    # A slow node: each C-STORE takes a second, so the push is caught while sending.
    slow = StoreSCP(tmp_path / "node", aet="SLOWSCP", extra=("--sleep-during", "1")).start()
    server = Served(data, tmp_path / "first.log", *dicom)
    try:
        with Client(server.address, timeout=60) as c:
            c.dicom.register_node("slow", "SLOWSCP", "127.0.0.1", slow.port)
            c.dicom.create_rule("local", ["gaussian:sigma=1"], dicom_nodes=["slow"])
            files = sorted(os.path.join(CT5N, f) for f in os.listdir(CT5N))
            done = storescu(port, files)
            assert done.returncode == 0, done.stderr
            (push,) = _until(lambda: [p for p in c.dicom.pushes()
                                      if p.state == dicom_pb2.PUSH_STATE_SENDING],
                             what="a push in the sending state")
        server.kill()
        # From now on the node answers at once (the same AE title, port and folder), so
        # that the resend does not take the slow node's seconds per instance.
        slow.stop()
        slow = StoreSCP(tmp_path / "node", aet="SLOWSCP", port=slow.port).start()
        server = Served(data, tmp_path / "second.log", *dicom)
        with Client(server.address, timeout=60) as c:
            final = (dicom_pb2.PUSH_STATE_DELIVERED, dicom_pb2.PUSH_STATE_FAILED)
            (after,) = _until(lambda: [p for p in c.dicom.pushes(push.job_id)
                                       if p.state in final], timeout=90,
                              what="the push's end after the restart")
        assert after.state == dicom_pb2.PUSH_STATE_DELIVERED, after.reason
        assert after.attempts >= 2 and after.instances_delivered == 5
        assert len(slow.files()) == 5
    finally:
        if server.proc.poll() is None:
            server.stop()
        slow.stop()
