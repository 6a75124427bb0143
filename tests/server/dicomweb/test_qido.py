"""QIDO-RS query parsing and matching, alone."""

from __future__ import annotations

import pytest

from medcompute.server.dicomweb.door import HttpError
from medcompute.server.dicomweb.qido import MAX_RESULTS, matches, parse_query


def test_keys_by_keyword_or_tag_and_reserved_ones():
    q = parse_query([("PatientID", "x"), ("00080060", "CT"), ("limit", "5"), ("offset", "2"),
                     ("includefield", "StudyDescription,00100010"),
                     ("includefield", "all"), ("fuzzymatching", "false")])
    assert [(kw, v) for _, kw, v in q.match] == [("PatientID", "x"), ("Modality", "CT")]
    assert q.include == {0x00081030, 0x00100010} and q.include_all
    assert (q.limit, q.offset, q.fuzzy) == (5, 2, False)
    assert parse_query([]).limit == MAX_RESULTS


@pytest.mark.parametrize(("items", "field", "status"), [
    ([("Bogus", "1")], "Bogus", 400),
    ([("PatientID", "a"), ("00100020", "b")], "00100020", 400),
    ([("limit", "x")], "limit", 400),
    ([("limit", str(MAX_RESULTS + 1))], "limit", 400),
    ([("offset", "-3")], "offset", 400),
    ([("StudyDate", "2001-01-01")], "StudyDate", 400),
    ([("includefield", "12345678")], "includefield", 400),
    ([("fuzzymatching", "yes")], "fuzzymatching", 400),
])
def test_bad_keys_are_named(items, field, status):
    with pytest.raises(HttpError) as err:
        parse_query(items)
    assert (err.value.field, err.value.status) == (field, status)


@pytest.mark.parametrize(("want", "got", "vr", "hit"), [
    ("", "anything", "PN", True), ("*", "", "PN", True),
    ("Doe*", "Doe^John", "PN", True), ("doe*", "Doe^John", "PN", False),
    ("D?e", "Doe", "PN", True), ("D?e", "Dooe", "PN", False),
    ("1.2,1.3", "1.3", "UI", True), ("1.2\\1.3", "1.4", "UI", False),
    ("20010101-20011231", "20010615", "DA", True), ("20020101-", "20010615", "DA", False),
    ("-20010101", "20010101", "DA", True), ("-20010101", "", "DA", False),
    ("1000-1200", "110000.5", "TM", True), ("[ab]", "[ab]", "LO", True),
    ("CT", "CT", "CS", True), ("CT", "MR", "CS", False),
])
def test_matching(want, got, vr, hit):
    assert matches(want, got, vr) is hit
