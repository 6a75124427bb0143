"""Unauthenticated denial of the DICOM port (issue 20, item 2), with raw sockets and
dcmtk's echoscu: idle connections do not hold the association slots and are closed
after the pending timeout; a PDU is bounded by its header before it is read; one host
holds at most its share of connections."""

from __future__ import annotations

import socket
import struct
import subprocess
import time

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.association import keep_responses
from medcompute.server.dicomnet.registry import NodeRegistry
from tests.dicom_peers import program

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

#: The A-ABORT this node sends before closing (service provider, invalid PDU parameter).
ABORT = bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 0x02, 0x06])


def _node(server_thread, data_dir, **limits):
    registry = NodeRegistry(data_dir)
    registry.add_ae_now("SCANNER", "st-mary", "127.0.0.1")
    registry.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=1, gpu_workers=0,
                          dicom_port=0, **limits)
    return server_thread(config)


@pytest.fixture(scope="module")
def node(server_thread, tmp_path_factory):
    with _node(server_thread, tmp_path_factory.mktemp("dos"), dicom_pending_timeout=1.0,
               dicom_max_per_host=64, dicom_max_pdu=64 << 10) as running:
        yield running


def _port(node) -> int:
    return node.running.dicom_port


def _echoscu(node) -> subprocess.CompletedProcess:
    return subprocess.run([program("echoscu"), "-v", "-aet", "SCANNER", "-aec", "MEDCOMPUTE",
                           "127.0.0.1", str(_port(node))], capture_output=True, text=True,
                          timeout=30)


def _closed_by_server(sock: socket.socket, timeout: float = 30.0) -> bytes:
    """What the server sent before it closed the connection (fails if it did not)."""
    sock.settimeout(timeout)
    got = b""
    while chunk := sock.recv(4096):
        got += chunk
    return got


def test_idle_connections_do_not_take_the_association_slots(node):
    # The issue's reproduction: 16 idle TCP connections (--max-associations' default).
    idle = [socket.create_connection(("127.0.0.1", _port(node)), 5) for _ in range(16)]
    try:
        done = _echoscu(node)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Local Limit Exceeded" not in done.stdout + done.stderr
    finally:
        for s in idle:
            s.close()


def test_a_connection_without_an_association_request_is_closed(node):
    with socket.create_connection(("127.0.0.1", _port(node)), 5) as idle, \
            socket.create_connection(("127.0.0.1", _port(node)), 5) as slow:
        # Half an A-ASSOCIATE-RQ, then nothing: pynetdicom alone waits in the read forever.
        slow.sendall(struct.pack(">BBL", 0x01, 0, 200) + b"\x00\x01" + b" " * 20)
        assert _closed_by_server(idle) in (b"", ABORT)
        assert _closed_by_server(slow) == ABORT
    assert _echoscu(node).returncode == 0


@pytest.mark.parametrize("before", [b"", struct.pack(">BBL", 0x22, 0, 0)],
                         ids=["first", "after an unknown PDU type"])
def test_a_4_gib_pdu_header_is_refused_before_its_body_is_read(node, before):
    # The reproduction: an A-ASSOCIATE-RQ declaring a 4 GiB PDU, then its bytes
    # (or after a PDU header of a type pynetdicom reads no body of).
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", _port(node)), 5) as s:
            s.sendall(before + struct.pack(">BBL", 0x01, 0, 0xFFFFFFFF))
            sent = 0
            with pytest.raises(OSError):    # the server closes: the send breaks off
                for _ in range(4096):       # up to 256 MiB
                    s.sendall(b"\x00" * (64 << 10))
                    sent += 64 << 10
            assert sent < 256 << 20
    assert _echoscu(node).returncode == 0


def test_an_association_request_over_64_kib_is_refused(node):
    with socket.create_connection(("127.0.0.1", _port(node)), 5) as s:
        s.sendall(struct.pack(">BBL", 0x01, 0, (64 << 10) + 1))
        assert _closed_by_server(s) == ABORT


def test_a_p_data_pdu_over_the_limit_aborts_the_association(node):
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", _port(node), ae_title="MEDCOMPUTE")
    keep_responses(assoc)
    assert assoc.is_established
    # The node announces its limit as its maximum PDU length.
    assert assoc.acceptor.maximum_length == 64 << 10
    raw = assoc.dul.socket.socket
    raw.sendall(struct.pack(">BBL", 0x04, 0, (64 << 10) + 1) + b"\x00" * 1024)
    deadline = time.monotonic() + 30
    while assoc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assoc.is_aborted
    raw.close()          # pynetdicom leaves it open when its shutdown fails after an abort
    assert _echoscu(node).returncode == 0


def test_one_host_holds_at_most_its_share_of_connections(server_thread, tmp_path):
    with _node(server_thread, tmp_path, dicom_max_per_host=3) as node:
        idle = [socket.create_connection(("127.0.0.1", _port(node)), 5) for _ in range(3)]
        try:
            with socket.create_connection(("127.0.0.1", _port(node)), 5) as fourth:
                assert _closed_by_server(fourth) == b""       # closed unread, at once
            assert _echoscu(node).returncode != 0
        finally:
            for s in idle:
                s.close()
        # Closed, they free their share (at the latest when their pending time is over).
        deadline = time.monotonic() + 30
        while (done := _echoscu(node)).returncode != 0:
            assert time.monotonic() < deadline, done.stdout + done.stderr
            time.sleep(0.2)
