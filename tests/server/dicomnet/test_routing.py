"""Routing rules' matching and checking, pure functions on plain values."""

from __future__ import annotations

import dataclasses

import pytest

from medcompute.proto.v1 import operations_pb2
from medcompute.server.dicomnet.registry import Series
from medcompute.server.dicomnet.routing import Rule, check_rule, matches
from medcompute.server.errors import InvalidArgument
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.storage.spool import ExpectedImage

SERIES = Series("s", "1.2", "CT_SCANNER_1", "MEDCOMPUTE", 0.0, 0.0, True, "complete", "img",
                "", 5)
ATTRS = {"Modality": "CT", "SeriesDescription": "Thorax 1.0 B31f", "BodyPartExamined": "CHEST"}


def _rule(**kw) -> Rule:
    pipeline = (operations_pb2.Operation(gaussian=operations_pb2.GaussianOp(sigma=[1.0])),)
    return Rule(subscriber="s", process=ProcessRequest(pipeline=pipeline), **kw)


@pytest.mark.parametrize(("kw", "expected"), [
    ({}, True),
    ({"calling_ae": "ct_scanner_1 "}, True),
    ({"calling_ae": "CT_SCANNER_2"}, False),
    ({"called_ae": "MEDCOMPUTE", "modality": "ct"}, True),
    ({"modality": "MR"}, False),
    ({"series_description": "thorax*"}, True),
    ({"series_description": "Thorax"}, False),
    ({"tags": {"BodyPartExamined": "CHEST"}}, True),
    ({"tags": {"BodyPartExamined": "HEAD"}}, False),
    ({"tags": {"ProtocolName": "*"}}, True),       # a prefix of nothing: any value
    ({"tags": {"ProtocolName": "X*"}}, False),
])
def test_matches(kw, expected):
    assert matches(_rule(**kw), SERIES, ATTRS) is expected


def test_check_rule_normalises_and_refuses_naming_the_field():
    assert check_rule(_rule(calling_ae=" CT1 ")).calling_ae == "CT1"
    cases = [(Rule(subscriber="s", process=ProcessRequest()), "rule.process.pipeline"),
             (_rule(output="7"), "rule.output"),
             (_rule(destination="not valid"), "rule.destination"),
             (_rule(label="x" * 300), "rule.label")]
    rule = _rule()
    bad_input = dataclasses.replace(rule, process=dataclasses.replace(
        rule.process, input=ExpectedImage("input.image_id", "stored", 0, stored="abc")))
    cases.append((bad_input, "rule.process.input"))
    for rule, field in cases:
        with pytest.raises(InvalidArgument) as err:
            check_rule(rule)
        assert err.value.field == field


def test_the_table_functions_keep_rules_and_the_jobs_they_started(catalog_at):
    from medcompute.server.dicomnet import routing
    from medcompute.server.storage.db import Database

    db = Database(catalog_at)
    try:
        rule = dataclasses.replace(_rule(), rule_id="r1", created_at=5.0)
        db.run(routing.add_rule, rule)
        assert [r.rule_id for r in db.run(routing.list_rules, "s")] == ["r1"]
        assert db.run(routing.list_rules, "other") == []
        assert db.run(routing.legacy_rules) == []           # kept as Rule.encode makes it
        db.run(routing.add_routed, "s", "1.2", "vol", "r1", "j1")
        db.run(routing.add_routed, "s", "1.2", "vol", "r2", "j2")
        assert db.run(routing.jobs_of, "s") == {"1.2": [("r1", "j1"), ("r2", "j2")]}
        assert db.run(routing.delete_rule, "r1") and not db.run(routing.delete_rule, "r1")
    finally:
        db.close()


def test_a_catalog_from_before_version_2_keeps_the_order_its_jobs_started_in(tmp_path):
    """Version 1 listed a series' jobs by SQLite's rowid; the migration to version 2
    carries that order into the started_at column every backend orders by."""
    import sqlite3

    from medcompute.server.dicomnet import routing
    from medcompute.server.storage.db import FILENAME, Database

    old = sqlite3.connect(tmp_path / FILENAME)
    old.executescript(routing._SCHEMA)          # version 1, no versions recorded
    for rule_id, job_id in [("r9", "j-b"), ("r1", "j-a")]:
        old.execute("INSERT INTO dicom_routed VALUES ('s', '1.2', 'vol', ?, ?)",
                    (rule_id, job_id))
    old.commit()
    old.close()
    db = Database(tmp_path)
    try:
        assert db.versions()["dicom_rule"] == 2
        db.run(routing.add_routed, "s", "1.2", "vol", "r5", "j-c")
        assert db.run(routing.jobs_of, "s") == {
            "1.2": [("r9", "j-b"), ("r1", "j-a"), ("r5", "j-c")]}
    finally:
        db.close()
