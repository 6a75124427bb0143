"""Who may call the DICOM port (access.py), on a real registry file: registered calling
AEs from their host or network, a source only while a retrieve from it is in flight (and
its instances to the collecting subscriber), a node only while its storage commitment is
awaited; the called AE title is this node's or an alias."""

from __future__ import annotations

import pytest

from medcompute.server.dicomnet.access import (
    CALLED_NOT_RECOGNISED,
    CALLING_NOT_RECOGNISED,
    Access,
    Caller,
    Refused,
    Retrievals,
)
from medcompute.server.dicomnet.commit import Commitments
from medcompute.server.dicomnet.registry import NodeRegistry

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def access(tmp_path):
    registry = NodeRegistry(tmp_path)
    registry.add_ae_now("CT_1", "st-mary", "10.0.4.21")
    registry.add_ae_now("WARD", "st-mary", "10.0.5.0/24")
    yield Access(registry, own_ae="MEDCOMPUTE", aliases=("MC_ALIAS",),
                 retrievals=Retrievals(), commitments=Commitments())
    registry.close()


def test_a_registered_calling_ae_is_admitted_from_its_host_or_network_only(access):
    caller = access.admit("CT_1", "MEDCOMPUTE", "10.0.4.21")
    assert isinstance(caller, Caller) and caller.subscriber == "st-mary"
    assert access.admit("WARD", "MEDCOMPUTE", "10.0.5.77").subscriber == "st-mary"
    assert access.admit("CT_1", "MEDCOMPUTE", "10.0.4.22") == Refused(
        CALLING_NOT_RECOGNISED, "not its registered host")
    assert access.admit("NOBODY", "MEDCOMPUTE", "10.0.4.21") == Refused(
        CALLING_NOT_RECOGNISED, "AE title not registered")
    assert isinstance(access.admit("", "MEDCOMPUTE", "10.0.4.21"), Refused)


def test_only_the_own_ae_title_and_its_aliases_are_called(access):
    assert isinstance(access.admit("CT_1", "MC_ALIAS", "10.0.4.21"), Caller)
    refused = access.admit("CT_1", "NOT_MEDCOMPUTE", "10.0.4.21")
    assert refused.diagnostic == CALLED_NOT_RECOGNISED and "NOT_MEDCOMPUTE" in refused.why


def test_a_source_may_call_only_while_a_retrieve_from_it_is_in_flight(access):
    assert isinstance(access.admit("PACS", "MEDCOMPUTE", "10.0.9.9"), Refused)
    with access.retrievals.expect("hospital-a", "PACS", "10.0.9.9") as message_id:
        caller = access.admit("PACS", "MEDCOMPUTE", "10.0.9.9")
        assert isinstance(caller, Caller) and caller.subscriber is None   # no Q/R
        assert isinstance(access.admit("PACS", "MEDCOMPUTE", "10.0.9.10"), Refused)
        assert isinstance(access.admit("OTHER", "MEDCOMPUTE", "10.0.9.9"), Refused)
        # Its instances are the collecting subscriber's, named by the originator or not.
        assert access.store_owner(caller, "MEDCOMPUTE", message_id) == "hospital-a"
        assert access.store_owner(caller, None, None) == "hospital-a"
    assert isinstance(access.admit("PACS", "MEDCOMPUTE", "10.0.9.9"), Refused)
    # An association admitted during the retrieve stores nothing once it has ended.
    assert access.store_owner(caller, "MEDCOMPUTE", message_id) is None


def test_the_move_originator_picks_the_retrieve_of_two_subscribers(access):
    with access.retrievals.expect("hospital-a", "PACS", "10.0.9.9") as a, \
            access.retrievals.expect("hospital-b", "PACS", "10.0.9.9") as b:
        assert a != b
        caller = access.admit("PACS", "MEDCOMPUTE", "10.0.9.9")
        assert access.store_owner(caller, "MEDCOMPUTE", b) == "hospital-b"
        assert access.store_owner(caller, "MEDCOMPUTE", a) == "hospital-a"
        # Without an originator it could be either: refused, never guessed.
        assert access.store_owner(caller, None, None) is None
        assert access.store_owner(caller, "ELSEWHERE", a) is None


def test_a_registered_caller_stores_for_its_subscriber_unless_the_originator_says(access):
    caller = access.admit("CT_1", "MEDCOMPUTE", "10.0.4.21")
    assert access.store_owner(caller, None, None) == "st-mary"
    with access.retrievals.expect("st-mary", "CT_1", "10.0.4.21") as message_id:
        assert access.store_owner(caller, "MEDCOMPUTE", message_id) == "st-mary"
        assert access.store_owner(caller, "MEDCOMPUTE", message_id + 1) == "st-mary"


def test_a_node_may_call_only_while_its_commitment_is_awaited(access):
    assert isinstance(access.admit("READPACS", "MEDCOMPUTE", "10.0.7.3"), Refused)
    uid = access.commitments.open("READPACS", "10.0.7.3", 1)
    caller = access.admit("READPACS", "MEDCOMPUTE", "10.0.7.3")
    assert isinstance(caller, Caller) and caller.subscriber is None
    assert access.store_owner(caller, None, None) is None           # it may only report
    assert isinstance(access.admit("READPACS", "MEDCOMPUTE", "10.0.7.4"), Refused)
    access.commitments.close(uid)
    assert isinstance(access.admit("READPACS", "MEDCOMPUTE", "10.0.7.3"), Refused)


def test_message_ids_are_unique_while_in_flight_and_wrap():
    flights = Retrievals()
    flights._next = 0xFFFE
    with flights.expect("s", "P", "10.0.0.1") as a, flights.expect("s", "P", "10.0.0.1") as b, \
            flights.expect("s", "P", "10.0.0.1") as c:
        assert (a, b, c) == (0xFFFF, 1, 2)
    assert flights.of("P", "10.0.0.1") == []


def test_rows_of_earlier_versions_that_match_no_caller_are_found(tmp_path):
    from medcompute.server.dicomnet import registry as tables
    from medcompute.server.dicomnet.access import unusable
    from medcompute.server.dicomnet.registry import CallingAE

    registry = NodeRegistry(tmp_path)
    try:
        registry.add_ae_now("CT_1", "st-mary", "10.0.4.21")
        # What RegisterSource used to write for a source registered with host '*'.
        registry.db.run(tables.add_ae, CallingAE("WILD_B", "hospital-b", "*", 0.0))
        assert [a.ae_title for a in unusable(registry.list_aes_now())] == ["WILD_B"]
        access = Access(registry, own_ae="MEDCOMPUTE", retrievals=Retrievals())
        assert isinstance(access.admit("WILD_B", "MEDCOMPUTE", "127.0.0.1"), Refused)
    finally:
        registry.close()
