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
    pipeline = (operations_pb2.Operation(gaussian=operations_pb2.GaussianOp()),)
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
