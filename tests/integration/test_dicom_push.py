"""Push delivery: dcmtk's storescu sends CT5N, a rule runs a Gaussian, and the server
itself pushes the derived series by C-STORE to a dcmtk storescp and to an Orthanc (whose
REST API then shows it), with the same pixels as `medcompute process`. A node that
refuses permanently fails at once with the reason; one that is down fails after its
tries; one that comes back after a pause gets the result by retry; one that stores every
instance and then refuses storage commitment is delivered, not committed."""

from __future__ import annotations

import asyncio
import io
import os
import re
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medcompute.client import Client
from medcompute.client.cli import main
from medcompute.proto.v1 import dicom_pb2
from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.push import Node, classify_rejection, classify_status, send_files
from medcompute.server.dicomnet.registry import NodeRegistry
from tests import dciodvfy
from tests.dicom_peers import Orthanc, StoreSCP, free_port, storescu
from tests.postgres_peer import CATALOGS, catalog_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CT5N = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                    "98892001", "CT5N")
ATTEMPTS = 4
COMMIT_TIMEOUT = 2.0
FORGET_LUA = """
function OnStoredInstance(instanceId, tags, metadata, origin)
  RestApiDelete('/instances/' .. instanceId)
end
"""


@pytest.fixture(scope="module", params=CATALOGS)
def node(request, server_thread, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("push-data")
    catalog = catalog_spec(request)
    registry = NodeRegistry(catalog or data_dir)
    registry.add_ae_now("SCANNER", "local", "127.0.0.1")
    registry.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=1,
                          dicom_port=0, dicom_quiet_seconds=30.0,
                          dicom_complete_on_release=True, dicom_push_attempts=ATTEMPTS,
                          dicom_push_backoff=0.1, dicom_commit_timeout=COMMIT_TIMEOUT,
                          catalog=catalog, http_port=0)
    with server_thread(config) as running:
        yield running


def _pixels(datasets) -> np.ndarray:
    ordered = sorted(datasets, key=lambda ds: int(ds.InstanceNumber))
    return np.stack([ds.pixel_array for ds in ordered])


def _wait_pushes(client, job_id, timeout=60):
    final = (dicom_pb2.PUSH_STATE_DELIVERED, dicom_pb2.PUSH_STATE_FAILED)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pushes = {p.node: p for p in client.dicom.pushes(job_id)}
        if len(pushes) == 9 and all(p.state in final for p in pushes.values()):
            return pushes
        time.sleep(0.2)
    raise AssertionError(f"pushes did not end: {client.dicom.pushes(job_id)}")


def test_results_are_pushed_retried_and_refused_with_reasons(node, tmp_path, capsys):
    server = ["--server", node.address]
    dcmtk = StoreSCP(tmp_path / "dcmtk", aet="READSCP").start()
    # Orthanc reports storage commitment back on an association to the service's own AE.
    service = {"AET": "MEDCOMPUTE", "Host": "127.0.0.1", "Port": node.running.dicom_port,
               "AllowStorageCommitment": True}
    pacs = Orthanc(tmp_path / "orthanc", aet="PACS", check_called_aet=True,
                   modalities={"medcompute": service}).start()
    # A PACS that loses what it stored (its Lua script deletes each instance once stored):
    # it reports the commitment failed for them.
    forgets = Orthanc(tmp_path / "forgets", aet="FORGETS", modalities={"medcompute": service},
                      lua=FORGET_LUA).start()
    # A PACS that does not know the service's AE: it aborts on the commitment request.
    refuses = Orthanc(tmp_path / "refuses", aet="REFUSES").start()
    # A PACS that accepts the request but reports to a port where nothing listens: the
    # wait for the report ends, and each try counts as failed.
    nowhere = dict(service, Port=free_port())
    mute = Orthanc(tmp_path / "mute", aet="MUTE", modalities={"medcompute": nowhere}).start()
    later = StoreSCP(tmp_path / "later", aet="LATESCP", port=free_port())
    # Accepts the association, then aborts it on the first C-STORE request.
    aborts = StoreSCP(tmp_path / "aborts", aet="ABORTSCP", extra=("--abort-after",)).start()
    down_port = free_port()
    tried = []

    async def failed_try(push, outcome):
        # The late node starts listening once a try to it has failed (and before the
        # server schedules the next one).
        tried.append((push.node, push.attempts + 1, outcome.reason))
        if push.node == "later" and not later.proc:
            await asyncio.to_thread(later.start)
    pusher = node.running.dicom.pusher
    pusher.failed_try = failed_try
    try:
        with Client(node.address, timeout=60) as c:
            c.dicom.register_node("reading-room", "READSCP", "127.0.0.1", dcmtk.port)
            c.dicom.register_node("pacs", "PACS", "127.0.0.1", pacs.dicom_port)
            c.dicom.register_node("wrong-ae", "NOTPACS", "127.0.0.1", pacs.dicom_port)
            c.dicom.register_node("down", "NOBODY", "127.0.0.1", down_port)
            c.dicom.register_node("aborts", "ABORTSCP", "127.0.0.1", aborts.port)
            c.dicom.register_node("forgets", "FORGETS", "127.0.0.1", forgets.dicom_port)
            c.dicom.register_node("mute", "MUTE", "127.0.0.1", mute.dicom_port)
            c.dicom.register_node("refuses", "REFUSES", "127.0.0.1", refuses.dicom_port)
            assert main(["dicom", "node", "add", "later", "--ae-title", "LATESCP", "--host",
                         "127.0.0.1", "--port", str(later.port), *server]) == 0
            assert len(c.dicom.nodes()) == 9
            rule = c.dicom.create_rule("local", ["gaussian:sigma=1"], modality="CT",
                                       dicom_nodes=["reading-room", "pacs", "wrong-ae",
                                                    "down", "later", "aborts", "forgets",
                                                    "mute", "refuses"])
            files = sorted(os.path.join(CT5N, f) for f in os.listdir(CT5N))
            done = storescu(node.running.dicom_port, files)
            assert done.returncode == 0, done.stderr
            deadline = time.monotonic() + 60
            while not (series := [s for s in c.dicom.received_series() if s.jobs]):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            (job,) = series[0].jobs
            assert job.rule_id == rule.rule_id
            pushes = _wait_pushes(c, job.job_id)
        ok = dicom_pb2.PUSH_STATE_DELIVERED
        assert pushes["reading-room"].state == ok and pushes["pacs"].state == ok
        assert pushes["reading-room"].instances_delivered == 5
        # Orthanc commits (N-ACTION, then its N-EVENT-REPORT); dcmtk's storescp does not
        # offer storage commitment.
        assert pushes["pacs"].committed
        assert pushes["pacs"].proof == ("C-STORE success per instance; storage "
                                        "commitment: committed")
        assert not pushes["reading-room"].committed
        assert pushes["reading-room"].proof == (
            "C-STORE success per instance; not committed: the destination does not offer "
            "storage commitment")
        wrong = pushes["wrong-ae"]
        assert wrong.state == dicom_pb2.PUSH_STATE_FAILED and wrong.attempts == 1
        assert wrong.reason == "association rejected (permanent): called AE title not " \
            "recognised"
        down = pushes["down"]
        assert down.state == dicom_pb2.PUSH_STATE_FAILED and down.attempts == ATTEMPTS
        assert down.reason == ("the node is unreachable (Connection refused) (gave up after "
                               f"{ATTEMPTS} tries)")
        assert pushes["later"].state == ok and pushes["later"].attempts == 2
        assert [t for t in tried if t[0] == "later"] == [
            ("later", 1, "the node is unreachable (Connection refused)")]
        cut = pushes["aborts"]
        assert cut.state == dicom_pb2.PUSH_STATE_FAILED and cut.attempts == ATTEMPTS
        assert cut.reason == ("the association ended before the node answered instance 1 of "
                              f"5 (gave up after {ATTEMPTS} tries)")
        assert cut.instances_delivered == 0
        lost = pushes["forgets"]
        assert lost.state == dicom_pb2.PUSH_STATE_FAILED and lost.attempts == 1
        assert re.fullmatch(r"storage commitment failed for [1-5] of 5 instance\(s\): [1-5] x "
                            r"0112 no such object instance", lost.reason), lost.reason
        assert not lost.committed and lost.instances_delivered == 5
        silent = pushes["mute"]
        assert silent.state == dicom_pb2.PUSH_STATE_FAILED and silent.attempts == ATTEMPTS
        assert silent.reason == (f"no storage commitment report within {COMMIT_TIMEOUT:g} s "
                                 f"(gave up after {ATTEMPTS} tries)")
        # Every C-STORE succeeded, then the commitment request was aborted: delivered,
        # not committed, with the reason; not sent again.
        aborted = pushes["refuses"]
        assert aborted.state == ok and aborted.attempts == 1
        assert not aborted.committed and aborted.instances_delivered == 5
        assert aborted.proof == ("C-STORE success per instance; not committed: the "
                                 "destination refused the storage commitment request")
        assert aborted.reason == ("the association ended before the node answered the "
                                  "storage commitment request")
        assert len(refuses.rest("/instances")) == 5
        # Each instance's C-STORE status and what the storage commitment said of it.

        def each(name):
            return [(i.answered, i.status, i.commitment) for i in pushes[name].instances]
        assert each("pacs") == [(True, 0, "committed")] * 5
        assert each("reading-room") == [(True, 0, "not offered")] * 5
        assert each("refuses") == [(True, 0, "request refused")] * 5
        assert each("mute") == [(True, 0, "no report")] * 5
        assert each("down") == each("wrong-ae") == each("aborts") == [(False, 0, "")] * 5
        words = [i.commitment for i in lost.instances]
        assert words.count("failed: 0112 no such object instance") == int(
            lost.reason.split()[4])
        assert set(words) <= {"committed", "failed: 0112 no such object instance"}
        sent = [pydicom.dcmread(p) for p in dcmtk.files()]
        assert sorted(i.sop_instance_uid for i in pushes["reading-room"].instances) == sorted(
            str(d.SOPInstanceUID) for d in sent)
        # The console's deliveries page shows the same, instance by instance.
        web = requests.Session()
        base = f"http://127.0.0.1:{node.running.http_port}"
        assert web.post(f"{base}/console/login", data={"key": ""}, timeout=30).ok
        page = web.get(f"{base}/console/deliveries", timeout=30).text
        for i in pushes["pacs"].instances:
            assert (f"<td>{i.sop_instance_uid}</td><td>0000</td><td>committed</td>"
                    in page), i.sop_instance_uid
        assert page.count("<td>not answered</td>") == 15

        # The same pixels as `medcompute process` with the same pipeline.
        assert main(["process", CT5N, "--op", "gaussian:sigma=1", "-o",
                     f"{tmp_path}/direct/", "-q", *server]) == 0
        want = _pixels(pydicom.dcmread(p) for p in (tmp_path / "direct").iterdir())
        got = _pixels(pydicom.dcmread(p) for p in dcmtk.files())
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(_pixels(pydicom.dcmread(p) for p in later.files()),
                                      want)
        sources = [Path(f).read_bytes() for f in files]
        for pushed in dcmtk.files():  # what a node receives passes the IOD's validator
            assert dciodvfy.new_errors(Path(pushed).read_bytes(), sources) == set()
        derived_uid = pydicom.dcmread(dcmtk.files()[0]).SeriesInstanceUID
        (shown,) = [s for s in pacs.rest("/series?expand")
                    if s["MainDicomTags"]["SeriesInstanceUID"] == derived_uid]
        assert len(shown["Instances"]) == 5
        from io import BytesIO

        in_pacs = [pydicom.dcmread(BytesIO(pacs.rest_bytes(f"/instances/{i}/file")))
                   for i in shown["Instances"]]
        np.testing.assert_array_equal(_pixels(in_pacs), want)
        capsys.readouterr()
        assert main(["dicom", "pushes", "--job", job.job_id, *server]) == 0
        shown_lines = {line.split()[3].split("/")[1]: line
                       for line in capsys.readouterr().out.splitlines()}
        assert "delivered" in shown_lines["pacs"]
        assert shown_lines["pacs"].endswith("instances 5  storage commitment: committed")
        assert "not committed: the destination does not offer storage commitment" in \
            shown_lines["reading-room"]
        assert shown_lines["refuses"].endswith(
            "not committed: the destination refused the storage commitment request  the "
            "association ended before the node answered the storage commitment request")
        # Each delivered push is metered and priced (the built-in tariff prices delivery).
        with Client(node.address, timeout=60) as c:
            invoice = c.invoice(time.strftime("%Y-%m", time.gmtime()))
            usage = c.usage(group_by="subscriber")
        # GetUsage counts them too: reading-room, pacs, later and refuses were delivered.
        assert usage.totals.deliveries == 4
        assert [(g.key, g.totals.deliveries) for g in usage.groups] == [("local", 4)]
        (mine,) = invoice.subscribers
        (line,) = [x for x in mine.lines if x.item == "delivery"]
        assert line.quantity == 4 and line.unit_price == "0.005" and line.amount == "0.02"
    finally:
        pusher.failed_try = None
        dcmtk.stop()
        pacs.stop()
        later.stop()
        aborts.stop()
        forgets.stop()
        mute.stop()
        refuses.stop()


@pytest.mark.parametrize(("name", "propose"), [("MR_small_RLE.dcm", "-xr"),
                                               ("MR_small_jpeg_ls_lossless.dcm", "-xt")])
def test_a_compressed_file_is_routed_and_pushed(node, tmp_path, name, propose):
    server = ["--server", node.address]
    # Both files are copies of one MR slice: new UIDs make each its own series.
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp_path / name
    ds.save_as(path)
    with StoreSCP(tmp_path / "node", aet="MRSCP") as scp, \
            Client(node.address, timeout=60) as c:
        node_name = f"mr-{propose[1:]}"
        c.dicom.register_node(node_name, "MRSCP", "127.0.0.1", scp.port)
        rule = c.dicom.create_rule("local", ["gaussian:sigma=1"], modality="MR",
                                   output="file", dicom_nodes=[node_name])
        try:
            done = storescu(node.running.dicom_port, [path], extra=(propose,))
            assert done.returncode == 0, done.stderr
            uid = pydicom.dcmread(path).SeriesInstanceUID
            deadline = time.monotonic() + 60
            while not (routed := [s for s in c.dicom.received_series()
                                  if s.series_instance_uid == uid and s.jobs]):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            job_id = routed[0].jobs[-1].job_id
            while not [p for p in c.dicom.pushes(job_id)
                       if p.state == dicom_pb2.PUSH_STATE_DELIVERED]:
                assert time.monotonic() < deadline, c.dicom.pushes(job_id)
                time.sleep(0.2)
        finally:
            c.dicom.delete_rule(rule.rule_id)
        (arrived,) = scp.files()
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == \
        pydicom.dcmread(get_testdata_file(name)).file_meta.TransferSyntaxUID
    assert main(["process", str(path), "--op", "gaussian:sigma=1", "-o", f"{tmp_path}/direct.dcm",
                 "-q", *server]) == 0
    np.testing.assert_array_equal(pydicom.dcmread(arrived).pixel_array,
                                  pydicom.dcmread(tmp_path / "direct.dcm").pixel_array)
    assert dciodvfy.new_errors(Path(arrived).read_bytes(), [path.read_bytes()]) == set()


@pytest.mark.parametrize(("code", "expected"), [
    (0x0000, None), (0xA700, True), (0xA7FF, True), (0x0110, True), (0xA900, False),
    (0xC000, False), (0xB000, False), (0xB007, False), (0x0122, False)])
def test_statuses_are_classified(code, expected):
    assert classify_status(code) is expected


def test_rejections_are_classified():
    assert classify_rejection(1, 1, 3) == (
        False, "association rejected (permanent): calling AE title not recognised")
    assert classify_rejection(2, 3, 2) == (
        True, "association rejected (transient): local limit exceeded")


def test_a_node_that_rejects_and_hangs_up_at_once_reads_as_rejected_each_time(tmp_path):
    # Orthanc sends its A-ASSOCIATE-RJ and closes the connection straight after; the close
    # can reach pynetdicom before it reads the reply, which then looks like no association
    # at all. Each of these tries must still be a permanent rejection, not "try again".
    with open(get_testdata_file("CT_small.dcm"), "rb") as f:
        files = [f.read()]
    with Orthanc(tmp_path / "pacs", aet="PACS", check_called_aet=True) as pacs:
        node = Node("local", "wrong-ae", "NOTPACS", "127.0.0.1", pacs.dicom_port, 0.0)
        outcomes = {(o.transient, o.reason, o.delivered)
                    for o in (send_files(files, node, own_ae="MEDCOMPUTE", timeout=10)
                              for _ in range(30))}
        assert outcomes == {
            (False, "association rejected (permanent): called AE title not recognised", 0)}
        assert pacs.rest("/instances") == []


class FakeCommitRefusingSCP:
    """A fake destination (pynetdicom, not a product): it stores every instance with
    success, offers storage commitment, and answers each N-ACTION with 0110."""

    def __init__(self, aet: str = "FAKEREFUSER"):
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import StorageCommitmentPushModel

        self.aet = aet
        self.stored = 0
        ae = AE(ae_title=aet)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax)
        ae.add_supported_context(StorageCommitmentPushModel)
        self._server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
            (evt.EVT_C_STORE, self._store), (evt.EVT_N_ACTION, lambda event: (0x0110, None))])
        self.port = self._server.server_address[1]

    def _store(self, event):
        self.stored += 1
        return 0x0000

    def stop(self):
        self._server.shutdown()


def test_a_commitment_refused_with_a_status_is_delivered_not_committed(node, tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesDescription = "commit-refused"
    path = tmp_path / "mr.dcm"
    ds.save_as(path)
    fake = FakeCommitRefusingSCP()
    try:
        with Client(node.address, timeout=60) as c:
            c.dicom.register_node("fake-refuser", fake.aet, "127.0.0.1", fake.port)
            rule = c.dicom.create_rule("local", ["gaussian:sigma=1"], modality="MR",
                                       series_description="commit-refused", output="file",
                                       dicom_nodes=["fake-refuser"])
            try:
                done = storescu(node.running.dicom_port, [path])
                assert done.returncode == 0, done.stderr
                deadline = time.monotonic() + 60
                while not (routed := [s for s in c.dicom.received_series()
                                      if s.series_instance_uid == ds.SeriesInstanceUID
                                      and s.jobs]):
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
                job_id = routed[0].jobs[-1].job_id
                while not (ended := [p for p in c.dicom.pushes(job_id) if p.state in (
                        dicom_pb2.PUSH_STATE_DELIVERED, dicom_pb2.PUSH_STATE_FAILED)]):
                    assert time.monotonic() < deadline, c.dicom.pushes(job_id)
                    time.sleep(0.2)
            finally:
                c.dicom.delete_rule(rule.rule_id)
        (push,) = ended
        assert push.state == dicom_pb2.PUSH_STATE_DELIVERED and push.attempts == 1
        assert not push.committed and push.instances_delivered == 1 and fake.stored == 1
        assert push.proof == ("C-STORE success per instance; not committed: the destination "
                              "refused the storage commitment request")
        assert push.reason == "the storage commitment request was answered with status 0110"
    finally:
        fake.stop()


class FakeRefusingSCP:
    """A fake destination (pynetdicom, not a product): it accepts several associations at
    once, answers the instance whose InstanceNumber is ``refuse`` with ``status`` and every
    other one with success, and counts the associations that stored at the same time."""

    def __init__(self, refuse: int, status: int, aet: str = "FAKESTORE"):
        import threading

        from pynetdicom import AE, AllStoragePresentationContexts, evt

        self.aet, self.refuse, self.status = aet, refuse, status
        self.stored: list[int] = []
        self.storing: set[int] = set()
        self.most = 0
        self._lock = threading.Lock()
        ae = AE(ae_title=aet)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax)
        self._server = ae.start_server(("127.0.0.1", 0), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self._server.server_address[1]

    def _store(self, event):
        number = int(event.dataset.InstanceNumber)
        with self._lock:
            self.storing.add(id(event.assoc))
            self.most = max(self.most, len(self.storing))
        time.sleep(0.05)                # an instance takes a while: the others overlap
        with self._lock:
            self.storing.discard(id(event.assoc))
            if number == self.refuse:
                return self.status
            self.stored.append(number)
        return 0x0000

    def stop(self):
        self._server.shutdown()


def _numbered(n: int) -> list[bytes]:
    import io

    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    files = []
    for k in range(n):
        base.SOPInstanceUID = base.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        base.InstanceNumber = k + 1
        buf = io.BytesIO()
        base.save_as(buf, enforce_file_format=True)
        files.append(buf.getvalue())
    return files


def test_several_instances_in_flight_still_end_failed_on_a_refused_instance():
    files = _numbered(24)
    fake = FakeRefusingSCP(refuse=13, status=0xC000)
    try:
        node = Node("local", "fake", fake.aet, "127.0.0.1", fake.port, 0.0)
        outcome = send_files(files, node, own_ae="MEDCOMPUTE", timeout=10, associations=4)
    finally:
        fake.stop()
    assert fake.most > 1, "the instances were not sent over several associations at once"
    assert outcome.transient is False
    assert outcome.reason == "instance 13 of 24 answered with status C000"
    assert outcome.delivered == len(fake.stored) < 24 and 13 not in fake.stored
    # Each instance: 0000 where stored, C000 for the refused one, unanswered for the rest.
    uids = [str(pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID) for f in files]
    assert [uid for uid, _, _ in outcome.instances] == uids
    assert [(k + 1, status) for k, (_, status, _) in enumerate(outcome.instances)
            if status is not None] == sorted([(n, 0) for n in fake.stored] + [(13, 0xC000)])
    assert {word for _, _, word in outcome.instances} == {""}


def test_several_associations_deliver_every_instance_once_and_a_node_serving_one_at_a_time_too(
        tmp_path):
    files = _numbered(20)
    fake = FakeRefusingSCP(refuse=0, status=0)
    try:
        node = Node("local", "fake", fake.aet, "127.0.0.1", fake.port, 0.0)
        outcome = send_files(files, node, own_ae="MEDCOMPUTE", timeout=10, associations=4)
    finally:
        fake.stop()
    assert (outcome.transient, outcome.delivered) == (None, 20) and fake.most > 1
    assert [status for _, status, _ in outcome.instances] == [0] * 20
    assert sorted(fake.stored) == list(range(1, 21))
    # dcmtk's storescp (without --fork) serves one association at a time: the further
    # associations are not accepted while the first one sends, which then sends them all.
    with StoreSCP(tmp_path / "scp", aet="ONEATATIME") as scp:
        node = Node("local", "one", scp.aet, "127.0.0.1", scp.port, 0.0)
        outcome = send_files(files, node, own_ae="MEDCOMPUTE", timeout=10, associations=4)
        assert (outcome.transient, outcome.delivered) == (None, 20)
        assert len(list((tmp_path / "scp").iterdir())) == 20


def test_the_association_reactor_leaves_a_response_to_the_call_waiting_for_it():
    """pynetdicom's association reactor reads the DIMSE queue without blocking and drops a
    response it finds there; a send_* call that took it for paused (the reactor was
    preempted between flagging itself paused and passing its checkpoint) then waits for
    the DIMSE timeout. keep_responses leaves responses to the blocking read. The
    association here is a stand-in holding pynetdicom's own DIMSE provider."""
    from types import SimpleNamespace

    from pynetdicom.dimse import DIMSEServiceProvider
    from pynetdicom.dimse_primitives import C_ECHO, C_STORE

    from medcompute.server.dicomnet.association import keep_responses

    def response():
        rsp = C_STORE()
        rsp.MessageIDBeingRespondedTo = 1
        rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        rsp.Status = 0x0000
        return rsp

    request = C_ECHO()
    request.MessageID = 2
    request.AffectedSOPClassUID = "1.2.840.10008.1.1"
    assert request.is_valid_request and not response().is_valid_request

    plain = DIMSEServiceProvider(SimpleNamespace(dimse_timeout=5))
    plain.msg_queue.put((1, response()))
    assert plain.get_msg(block=False)[1] is not None    # pynetdicom's reactor takes it

    dimse = DIMSEServiceProvider(SimpleNamespace(dimse_timeout=5))
    keep_responses(SimpleNamespace(dimse=dimse))
    kept = response()
    dimse.msg_queue.put((1, kept))
    dimse.msg_queue.put((3, request))
    assert dimse.get_msg(block=False) == (3, request)    # a request is served
    assert dimse.get_msg(block=False) == (None, None)    # the response stays
    assert dimse.get_msg(block=True) == (1, kept)        # for the call waiting for it
    dimse.msg_queue.put((None, None))                    # an abort wakes the waiting call
    assert dimse.get_msg(block=False) == (None, None) and dimse.msg_queue.qsize() == 1
