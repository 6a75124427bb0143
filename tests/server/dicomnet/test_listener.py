"""listener.py's guards on pynetdicom's association internals, on real pynetdicom
objects (the sockets and limits are exercised against a running node in
tests/security/test_dicom_dos.py and tests/fuzz/test_fuzz_dicom_port.py)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.fsm import InvalidEventError
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import P_DATA

from medcompute.server.dicomnet.listener import GuardedDIMSE, GuardedStateMachine
from tests.dicom_peers import association_request


def _acceptor() -> Association:
    return Association(AE(ae_title="MEDCOMPUTE"), "acceptor")


def _command_without_command_field() -> P_DATA:
    command = Dataset()
    command.MessageID = 1
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, True
    write_dataset(out, command)
    primitive = P_DATA()
    # One PDV: context 1, message control header 0x03 (command, last fragment).
    primitive.presentation_data_value_list = [[1, b"\x03" + out.getvalue()]]
    return primitive


def test_a_dimse_message_that_cannot_be_decoded_is_an_invalid_pdu():
    assoc = _acceptor()
    assoc.dimse.__class__ = GuardedDIMSE
    assoc.dimse.receive_primitive(_command_without_command_field())   # no exception
    assert assoc.dul.event_queue.get_nowait() == "Evt19"              # A-ABORT follows
    assert assoc.dimse.message is None


def test_pynetdicom_alone_raises_on_that_message():
    assoc = _acceptor()
    with pytest.raises(AttributeError):
        assoc.dimse.receive_primitive(_command_without_command_field())


def test_an_event_without_transition_is_ignored_only_while_closing():
    machine = _acceptor().dul.state_machine
    machine.__class__ = GuardedStateMachine
    for state in ("Sta1", "Sta13"):
        machine.current_state = state
        machine.do_action("Evt14")          # a late A-RELEASE response: nothing happens
        assert machine.current_state == state
    machine.current_state = "Sta6"
    with pytest.raises(InvalidEventError):
        machine.do_action("Evt5")


def test_an_association_request_pynetdicom_cannot_convert_ends_the_connection():
    data = bytearray(association_request())
    # The first presentation context item (type 0x20): its ID, 1, made even.
    at = data.index(b"\x20\x00", 74)
    assert data[at + 4] == 1
    data[at + 4] = 2

    def received(guarded: bool):
        pdu = A_ASSOCIATE_RQ()
        pdu.decode(bytes(data))
        assoc = _acceptor()
        if guarded:
            assoc.dul.state_machine.__class__ = GuardedStateMachine
        assoc.dul.state_machine.current_state = "Sta2"
        assoc.dul._recv_pdu.put(pdu)
        assoc.dul.state_machine.do_action("Evt6")
        return assoc

    with pytest.raises(ValueError, match="context_id"):
        received(guarded=False)                     # pynetdicom alone
    assoc = received(guarded=True)
    assert assoc.dul.state_machine.current_state == "Sta1"
    assert assoc.dul._kill_thread                   # the reader stops
