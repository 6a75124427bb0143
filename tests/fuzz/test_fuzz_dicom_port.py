"""Fuzzing the DICOM port with raw PDUs: random PDUs, mutated A-ASSOCIATE-RQs, and
mutated P-DATA-TF PDUs carrying C-STOREs of pydicom's bundled files after a valid
association.

Whatever arrives, the node answers (an A-ASSOCIATE-AC/RJ, a P-DATA, an A-ABORT) or
closes the connection; it keeps serving (a registered caller's C-ECHO succeeds after
every example), and its memory does not grow by more than the fuzz folder's bound
(a declared length is never buffered: the node reads PDU headers before bodies).
"""

from __future__ import annotations

import io
import resource
import socket
import struct
from functools import cache

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification

from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.association import keep_responses
from medcompute.server.dicomnet.registry import NodeRegistry
from tests.dicom_peers import association_request

pytestmark = [pytest.mark.integration,
              pytest.mark.timeout(180 + 3 * settings().max_examples)]

#: Growth of this process's (the server's) peak memory one example may cause.
MEMORY_BOUND = 128 << 20
#: Seconds the peer listens for the node's answers before it hangs up.
LISTEN = 0.25
#: Uncompressed files (re-encoded in the default transfer syntax, implicit VR).
FILES = {"CT_small.dcm": CTImageStorage, "MR_small.dcm": MRImageStorage,
         "MR_small_bigendian.dcm": MRImageStorage}
CONTEXTS = {Verification: 1, CTImageStorage: 3, MRImageStorage: 5}


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


@pytest.fixture(scope="module")
def node(server_thread, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("fuzz-dicom-port")
    registry = NodeRegistry(data_dir)
    registry.add_ae_now("FUZZER", "fuzz", "127.0.0.1")
    registry.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=1, gpu_workers=0,
                          dicom_port=0, dicom_quiet_seconds=1.0, dicom_max_per_host=4096,
                          dicom_max_pdu=1 << 20)
    with server_thread(config) as running:
        yield running


@cache
def _store_pdus(name: str, max_pdu: int = 16384) -> bytes:
    """The P-DATA-TF PDUs of a C-STORE of one of pydicom's files."""
    ds = pydicom.dcmread(get_testdata_file(name, download=False))
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, True
    write_dataset(out, ds)
    request = C_STORE()
    request.MessageID = 7
    request.AffectedSOPClassUID = FILES[name]
    request.AffectedSOPInstanceUID = ds.SOPInstanceUID
    request.Priority = 2
    request.DataSet = io.BytesIO(out.getvalue())
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    encoded = b""
    for primitive in message.encode_msg(CONTEXTS[FILES[name]], max_pdu):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        encoded += pdu.encode()
    return encoded


def _pdu_of(s: socket.socket) -> tuple[int, bytes]:
    """The next PDU the node sends: its type and body."""
    head = b""
    while len(head) < 6:
        head += s.recv(6 - len(head)) or b"!" * 6
    pdu_type, _, length = struct.unpack(">BBL", head[:6])
    body = b""
    while len(body) < length and (chunk := s.recv(length - len(body))):
        body += chunk
    return pdu_type, body


def _exchange(node, *parts: bytes, associated: bool = False) -> bytes:
    """Send ``parts`` on one connection, in turn, listening a moment after each; what the
    node answered. A part that cannot be sent (the node closed) ends it. With
    ``associated``, a valid association is made first (and its A-ASSOCIATE-AC awaited)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", node.running.dicom_port), 60) as s:
        if associated:
            s.sendall(association_request())
            pdu_type, _ = _pdu_of(s)
            assert pdu_type == 0x02, "the valid association request was not accepted"
        s.settimeout(LISTEN)
        for part in parts:
            try:
                s.sendall(part)
            except OSError:
                break
            try:
                while chunk := s.recv(65536):
                    answer += chunk
                break                        # the node closed the connection
            except TimeoutError:
                continue
            except OSError:
                break
    return answer


def _assert_alive(node) -> None:
    ae = AE(ae_title="FUZZER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.running.dicom_port, ae_title="MEDCOMPUTE")
    keep_responses(assoc)
    assert assoc.is_established, "the node stopped accepting associations"
    try:
        status = assoc.send_c_echo()
        assert status and status.Status == 0x0000, "the node stopped answering C-ECHO"
    finally:
        assoc.release()


def _check(node, *parts: bytes, associated: bool = False) -> bytes:
    before = _peak_rss()
    answer = _exchange(node, *parts, associated=associated)
    grown = _peak_rss() - before
    assert grown < MEMORY_BOUND, f"one connection took {grown >> 20} MiB of the server"
    _assert_alive(node)
    return answer


@st.composite
def _mutated(draw, data: bytes) -> bytes:
    """``data`` with a few of: bit flips, a 32-bit length rewritten, bytes inserted,
    deleted, or the whole cut short."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "length", "insert", "delete", "truncate"]))
        if not buf:
            break
        at = draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "length" and at + 4 <= len(buf):
            value = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(buf)]) |
                         st.integers(0, 0xFFFFFFFF))
            buf[at:at + 4] = struct.pack(">L", value)
        elif kind == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del buf[at:at + draw(st.integers(1, 64))]
        else:
            del buf[at:]
    return bytes(buf)


_pdu = st.builds(
    lambda pdu_type, length, body: struct.pack(">BBL", pdu_type, 0, length) + body,
    st.sampled_from(range(1, 8)) | st.integers(0, 255),
    st.sampled_from([0, 4, 68, 64 << 10, (64 << 10) + 1, 0xFFFFFFFF]) |
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=4096))


@given(pdus=st.lists(_pdu, min_size=1, max_size=4))
def test_random_pdus_leave_the_node_serving(node, pdus):
    _check(node, *pdus)


@given(data=st.data(), calling=st.sampled_from(["FUZZER", "STRANGER", "X"]),
       called=st.sampled_from(["MEDCOMPUTE", "WRONGAE"]))
def test_mutated_association_requests_leave_the_node_serving(node, data, calling, called):
    request = data.draw(_mutated(association_request(calling, called)))
    answer = _check(node, request)
    assert answer[:1] in (b"", b"\x02", b"\x03", b"\x07"), answer[:16]


@given(data=st.data(), name=st.sampled_from(sorted(FILES)))
def test_mutated_p_data_after_an_association_leaves_the_node_serving(node, data, name):
    _check(node, data.draw(_mutated(_store_pdus(name))), associated=True)


def test_the_unmutated_exchanges_are_answered(node):
    """The bases of the mutations are valid: the association is accepted and the C-STORE
    answered."""
    with socket.create_connection(("127.0.0.1", node.running.dicom_port), 60) as s:
        s.sendall(association_request())
        assert _pdu_of(s)[0] == 0x02                    # A-ASSOCIATE-AC
        s.sendall(_store_pdus("CT_small.dcm"))
        assert _pdu_of(s)[0] == 0x04                    # P-DATA-TF: the C-STORE-RSP
    _assert_alive(node)
