"""The refusals of dicom/collect.py: a source's settings and a collection's query before
anything is asked of the PACS, an unknown source, and a PACS that fails the query
(a pynetdicom SCP on port 0, answering as a failing PACS would)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from medcompute.server.dicomnet.collect import Collector, Query, SourceBook, check_query
from medcompute.server.errors import InvalidArgument, NotFound, Unavailable

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def book(tmp_path):
    book = SourceBook(tmp_path)
    yield book
    book.close()


def test_a_modality_that_is_no_code_is_refused(book):
    for modality in ("CT\\MR", "C" * 17):
        with pytest.raises(InvalidArgument) as caught:
            asyncio.run(book.add("clinic-a", "pacs", "PACS", "127.0.0.1", 11112, "move",
                                 every=3600, modality=modality))
        assert caught.value.field == "source.schedule_modality"
        assert caught.value.message == "expected a modality code such as CT"
    assert not asyncio.run(book.sources("clinic-a"))                  # nothing kept


def test_a_retrieve_method_that_is_not_one_is_refused(book):
    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(book.add("clinic-a", "pacs", "PACS", "127.0.0.1", 11112, "push"))
    assert caught.value.field == "source.method"
    assert caught.value.message == "expected one of move, get"
    collector = Collector(book, ingress=None, retrievals=None, own_ae="MEDCOMPUTE")
    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(collector.collect("clinic-a", "pacs", Query(), "push"))
    assert caught.value.field == "method"
    assert caught.value.message == "expected one of move, get"


def _closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_source_nothing_listens_for_is_unavailable(book):
    asyncio.run(book.add("clinic-a", "pacs", "PACS", "127.0.0.1", _closed_port(), "move"))
    collector = Collector(book, ingress=None, retrievals=None, own_ae="MEDCOMPUTE")
    with pytest.raises(Unavailable) as caught:
        asyncio.run(collector.collect("clinic-a", "pacs", Query(modality="CT")))
    assert caught.value.field == "source"
    assert caught.value.message.startswith("the source 'pacs' is unreachable (")


@pytest.mark.parametrize("query, field", [
    (Query(modality="CT\\MR"), "modality"),
    (Query(study_uid="1." * 40), "study_instance_uid"),
    (Query(patient_id="P\\Q"), "patient_id"),
])
def test_a_query_value_the_pacs_could_not_match_is_refused(query, field):
    with pytest.raises(InvalidArgument) as caught:
        check_query(query)
    assert caught.value.field == field
    assert caught.value.message == "expected at most 64 characters without a backslash"


@pytest.mark.parametrize("name, shown", [("pacs", "'pacs'"), ("p" * 300, f"'{'p' * 64}'…")])
def test_collecting_from_an_unknown_source_is_not_found(book, name, shown):
    with pytest.raises(NotFound) as caught:
        asyncio.run(book.source("clinic-a", name))
    assert caught.value.field == "source"
    assert caught.value.message == (f"no source {shown} (register it with "
                                    "`medcompute dicom source add`)")


def _failing_pacs(handler):
    ae = AE(ae_title="FAILINGPACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    return ae.start_server(("127.0.0.1", 0), block=False,
                           evt_handlers=[(evt.EVT_C_FIND, handler)])


def _refuses(event):
    yield 0xA700, None               # Out of resources: the PACS cannot run the query


def _aborts(event):
    event.assoc.abort()              # the PACS goes away without an answer
    yield 0xFF00, None


@pytest.mark.parametrize("handler, words", [
    (_refuses, "the source answered the query with status A700"),
    (_aborts, "the source ended the query without an answer"),
])
def test_a_pacs_that_fails_the_query_is_unavailable(book, handler, words):
    server = _failing_pacs(handler)
    try:
        port = server.server_address[1]
        asyncio.run(book.add("clinic-a", "pacs", "FAILINGPACS", "127.0.0.1", port, "move"))
        collector = Collector(book, ingress=None, retrievals=None, own_ae="MEDCOMPUTE")
        with pytest.raises(Unavailable) as caught:
            asyncio.run(collector.collect("clinic-a", "pacs", Query(modality="CT")))
        assert caught.value.field == "source" and caught.value.message == words
    finally:
        server.shutdown()
