"""`medcompute serve --dicom-port` as a storage SCP, against dcmtk's storescu/echoscu and
pynetdicom as the senders: registered calling AE titles only, instances durable before
success, series grouped and completed, bad input answered with DICOM statuses."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import time

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from medcompute.client import exits
from medcompute.client.cli import main
from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.association import keep_responses
from medcompute.server.dicomnet.registry import NodeRegistry
from medcompute.server.storage.images import FindFilter
from medcompute.server.storage.space import MinFree
from tests.dicom_oracle import modality_values, series_volume
from tests.dicom_peers import program, storescu
from tests.store_helpers import coder

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CT5N = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                    "98892001", "CT5N")
MAX_INSTANCE = 200_000


@pytest.fixture(scope="module")
def node(server_thread, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("dicom-data")
    registry = NodeRegistry(data_dir)
    registry.add_ae_now("SCANNER", "st-mary", "127.0.0.1")
    registry.add_ae_now("ELSEWHERE", "st-mary", "10.11.12.13")
    registry.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=1,
                          dicom_port=0, dicom_ae_title="MEDCOMPUTE", dicom_quiet_seconds=1.0,
                          dicom_max_associations=2, dicom_max_instance_bytes=MAX_INSTANCE)
    with server_thread(config) as running:
        yield running


def _port(node) -> int:
    return node.running.dicom_port


def _series(node, owner="st-mary"):
    return node.call(node.running.dicom.registry.list_series(owner))


def _voxels(node, record) -> np.ndarray:
    """The stored voxels of ``record``, as Get sends them uncompressed."""
    async def read():
        _, chunks = node.running.store.stream(record, "voxels", coder())
        return b"".join([bytes(c) async for c in chunks])
    return np.frombuffer(node.call(read()), record.dtype).reshape(record.shape)


def _wait_complete(node, series_uid, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for s in _series(node):
            if s.series_uid == series_uid and s.state != "receiving":
                return s
        time.sleep(0.1)
    raise AssertionError("the series did not complete")


def _echo(node, aet="SCANNER"):
    ae = AE(ae_title=aet)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", _port(node), ae_title="MEDCOMPUTE")
    keep_responses(assoc)
    return assoc


def _ct(**changes):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    for key, value in changes.items():
        setattr(ds, key, value)
    return ds


def _send(node, datasets, aet="SCANNER"):
    ae = AE(ae_title=aet)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", _port(node), ae_title="MEDCOMPUTE")
    keep_responses(assoc)
    assert assoc.is_established
    try:
        return [assoc.send_c_store(ds).Status for ds in datasets]
    finally:
        assoc.release()


def test_echoscu_from_a_registered_ae_is_answered(node):
    done = subprocess.run([program("echoscu"), "-aet", "SCANNER", "-aec", "MEDCOMPUTE",
                           "127.0.0.1", str(_port(node))], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("aet", ["STRANGER", "ELSEWHERE"])
def test_unknown_calling_ae_or_host_is_rejected_with_the_dicom_reason(node, aet):
    assoc = _echo(node, aet)
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    # Rejected permanent (1), by the service user (1): calling AE title not recognised (3).
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x03)
    done = subprocess.run([program("echoscu"), "-aet", aet, "-aec", "MEDCOMPUTE",
                           "127.0.0.1", str(_port(node))], capture_output=True, timeout=30)
    assert done.returncode != 0


def test_an_ae_registered_from_the_command_line_may_then_call(node, capsys):
    assert _echo(node, "LATECOMER").is_rejected
    data_dir = str(node.config.data_dir)
    assert main(["dicom", "ae", "add", "LATECOMER", "--subscriber", "st-mary", "--host",
                 "127.0.0.1", "--json", "--data-dir", data_dir]) == 0
    added = json.loads(capsys.readouterr().out)
    assert (added["ae_title"], added["subscriber"], added["host"]) == \
        ("LATECOMER", "st-mary", "127.0.0.1")
    assert main(["dicom", "ae", "list", "--data-dir", data_dir]) == 0
    assert "LATECOMER" in capsys.readouterr().out
    assoc = _echo(node, "LATECOMER")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    capsys.readouterr()
    assert main(["dicom", "ae", "rm", "LATECOMER", "--data-dir", data_dir]) == 0
    assert capsys.readouterr().out == \
        "removed calling AE title LATECOMER: it can no longer associate\n"
    assert _echo(node, "LATECOMER").is_rejected
    assert main(["dicom", "ae", "rm", "LATECOMER", "--data-dir", data_dir]) == exits.NOT_FOUND
    assert main(["dicom", "ae", "add", "BAD\\AE", "--subscriber", "s", "--host", "h",
                 "--data-dir", data_dir]) == 2
    assert "ae_title: expected 1 to 16" in capsys.readouterr().err


def test_an_ae_registered_through_the_server_may_then_call(node, capsys):
    server = ["--server", node.address]
    assert _echo(node, "VIAGRPC").is_rejected
    assert main(["dicom", "ae", "add", "VIAGRPC", "--subscriber", "st-mary", "--host",
                 "127.0.0.1", "--json", *server]) == 0
    added = json.loads(capsys.readouterr().out)
    assert (added["ae_title"], added["subscriber"], added["host"]) == \
        ("VIAGRPC", "st-mary", "127.0.0.1")
    assert main(["dicom", "ae", "list", "--subscriber", "st-mary", "--json", *server]) == 0
    assert "VIAGRPC" in [a["ae_title"] for a in json.loads(capsys.readouterr().out)]
    assoc = _echo(node, "VIAGRPC")
    assert assoc.is_established
    assoc.release()
    assert main(["dicom", "ae", "rm", "VIAGRPC", "--json", *server]) == 0
    assert json.loads(capsys.readouterr().out) == {"ae_title": "VIAGRPC", "removed": True}
    assert _echo(node, "VIAGRPC").is_rejected
    assert main(["dicom", "ae", "rm", "VIAGRPC", *server]) == exits.NOT_FOUND
    assert "ae_title:" in capsys.readouterr().err
    assert main(["dicom", "node", "add", "pacs", "--ae-title", "PACS", "--host", "127.0.0.1",
                 "--port", "104", *server]) == 0
    capsys.readouterr()
    assert main(["dicom", "node", "rm", "pacs", *server]) == 0
    assert capsys.readouterr().out == "removed DICOM node pacs\n"
    assert main(["dicom", "ae", "add", "BAD\\AE", "--subscriber", "s", "--host", "h",
                 *server]) == exits.SERVER
    assert "ae_title: expected 1 to 16" in capsys.readouterr().err
    assert main(["dicom", "ae", "add", "GOOD", "--subscriber", "s", "--host", "two words",
                 *server]) == exits.SERVER
    assert "host:" in capsys.readouterr().err
    # No server answers: unreachable.
    assert main(["dicom", "ae", "list", "--server", "127.0.0.1:1", "--timeout", "2"]) == \
        exits.UNREACHABLE


def test_storescu_series_is_stored_grouped_and_completed(node):
    files = sorted(os.path.join(CT5N, f) for f in os.listdir(CT5N))
    done = storescu(_port(node), files)
    assert done.returncode == 0, done.stderr
    series_uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    s = _wait_complete(node, series_uid)
    assert s.state == "complete" and s.calling_ae == "SCANNER" and s.called_ae == "MEDCOMPUTE"
    store = node.running.store
    volume = _voxels(node, node.call(store.get(s.image_id, owner="st-mary")))
    assert volume.shape[0] == len(files)
    # The values pydicom decodes and rescales, in the order of the slices' positions.
    np.testing.assert_array_equal(volume, series_volume(files))
    # Only the series' volume is left of it: the instance images are removed right after
    # the series is marked complete.
    deadline = time.monotonic() + 30
    while True:
        found, _ = node.call(store.find(FindFilter(series_uid=series_uid), owner="st-mary"))
        if len(found) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [r.id for r in found] == [s.image_id]
    # Another subscriber does not see it.
    assert node.call(store.find(FindFilter(series_uid=series_uid),
                                owner="other"))[0] == []


@pytest.mark.parametrize(("name", "propose"), [("MR_small_RLE.dcm", "-xr"),
                                               ("MR_small_jpeg_ls_lossless.dcm", "-xt")])
def test_compressed_transfer_syntaxes_are_received_and_decoded(node, name, propose):
    path = get_testdata_file(name)
    # storescu sends the file as it is, in its compressed transfer syntax.
    done = storescu(_port(node), [path], extra=(propose,))
    assert done.returncode == 0, done.stderr
    ds = pydicom.dcmread(path)
    s = _wait_complete(node, ds.SeriesInstanceUID)
    assert s.state == "complete"
    volume = _voxels(node, node.call(node.running.store.get(s.image_id, owner="st-mary")))
    # Decoded by the service as pydicom (with pylibjpeg) decodes the same file.
    np.testing.assert_array_equal(np.asarray(volume).reshape(ds.pixel_array.shape),
                                  modality_values(ds))


def test_broken_pixel_data_gets_cannot_understand_and_the_server_keeps_serving(node):
    ds = _ct()
    ds.PixelData = ds.PixelData[:1000]          # far fewer bytes than rows x columns
    assert _send(node, [ds]) == [0xC000]
    assert _send(node, [_ct()]) == [0x0000]


def test_an_oversize_instance_gets_out_of_resources(node):
    big = np.zeros((400, 400), np.int16)
    ds = _ct(Rows=400, Columns=400)
    ds.PixelData = big.tobytes()
    assert len(ds.PixelData) > MAX_INSTANCE
    assert _send(node, [ds]) == [0xA700]


def test_an_unknown_sop_class_is_refused_at_negotiation(node):
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context("1.2.826.0.1.3680043.9.9999.1", ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", _port(node), ae_title="MEDCOMPUTE")
    keep_responses(assoc)
    assert assoc.is_established
    try:
        assert [c.abstract_syntax for c in assoc.accepted_contexts] == [Verification]
        rejected = [c.abstract_syntax for c in assoc.rejected_contexts]
        assert rejected == ["1.2.826.0.1.3680043.9.9999.1"]
    finally:
        assoc.release()


def test_associations_beyond_the_limit_are_rejected_transiently(node):
    held = [_echo(node), _echo(node)]
    try:
        assert all(a.is_established for a in held)
        extra = _echo(node)
        assert extra.is_rejected
        rj = extra.acceptor.primitive
        # Rejected transient (2), by the presentation layer (3): local limit exceeded (2).
        assert (rj.result, rj.result_source, rj.diagnostic) == (0x02, 0x03, 0x02)
    finally:
        for a in held:
            a.release()
    assert _send(node, [_ct()]) == [0x0000]


def test_garbage_and_cut_pdus_do_not_stop_the_server(node):
    for payload in (b"\x01\x00\x00\x00\x10\x00garbage", os.urandom(300), b"\x01"):
        with socket.create_connection(("127.0.0.1", _port(node)), 5) as s:
            s.sendall(payload)
    # The broken connections are dropped (their slots freed) and the node answers again.
    deadline = time.monotonic() + 30
    while not (assoc := _echo(node)).is_established:
        assert time.monotonic() < deadline, "the node did not accept an association again"
        time.sleep(0.2)
    assoc.release()
    assert _send(node, [_ct()]) == [0x0000]


def test_no_patient_data_in_logs(node, caplog):
    ds = _ct(PatientName="Doe^Jane^Secret", PatientID="PID-SECRET-4711")
    broken = _ct(PatientName="Doe^Jane^Secret", PatientID="PID-SECRET-4711")
    broken.PixelData = broken.PixelData[:10]
    with caplog.at_level(logging.DEBUG):
        assert _send(node, [ds, broken]) == [0x0000, 0xC000]
        _wait_complete(node, ds.SeriesInstanceUID)
    text = caplog.text
    assert "Secret" not in text and "PID-SECRET" not in text
    assert "dicom:" in text         # the node did log (statuses, AE titles)


def test_below_the_free_space_reserve_an_instance_gets_out_of_resources(server_thread,
                                                                        tmp_path):
    """The reserve guards DICOM ingress as it guards Register: refused at once with 0xA700,
    nothing kept; served again once the reserve is met (here: lowered)."""
    registry = NodeRegistry(tmp_path)
    registry.add_ae_now("SCANNER", "st-mary", "127.0.0.1")
    registry.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, workers=1, dicom_port=0,
                          dicom_ae_title="MEDCOMPUTE", min_free_bytes=1 << 60)   # 1 EiB
    with server_thread(config) as full:
        assert _send(full, [_ct()]) == [0xA700]
        assert full.call(full.running.store.catalog.count()) == 0
        full.running.store.space.min_free = MinFree()
        assert _send(full, [_ct()]) == [0x0000]
        assert full.call(full.running.store.catalog.count()) == 1


def test_a_taken_dicom_port_stops_the_start_and_frees_the_grpc_port(tmp_path):
    """Startup fails naming the flag, and what had started (the gRPC port, the cluster)
    is stopped: the address can be served again at once."""
    from medcompute.server.app import start
    from medcompute.server.errors import FailedPrecondition
    from tests.dicom_peers import free_port

    grpc_port = free_port()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        config = ServerConfig(address=f"127.0.0.1:{grpc_port}", data_dir=tmp_path, workers=1,
                              dicom_port=taken.getsockname()[1])

        async def start_then_probe():
            with pytest.raises(FailedPrecondition) as err:
                await start(config)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", grpc_port), timeout=5).close()
            return err.value

        err = asyncio.run(start_then_probe())
    assert err.field == "--dicom-port"
    assert "cannot listen on" in str(err)
