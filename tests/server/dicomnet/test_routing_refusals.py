"""The refusals of dicom/routing.py's rule book: a rule's tags and label, a DICOM node it
names that its recipient has not registered, and a rule id that does not exist."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.proto.v1 import operations_pb2
from medcompute.server.dicomnet.push import PushBook
from medcompute.server.dicomnet.routing import Rule, RuleBook, check_rule
from medcompute.server.errors import InvalidArgument, NotFound
from medcompute.server.jobs.requests import ProcessRequest

PIPELINE = (operations_pb2.Operation(gaussian=operations_pb2.GaussianOp(sigma=[1.0])),)


def _rule(**kw) -> Rule:
    return Rule(subscriber="clinic-a", process=ProcessRequest(pipeline=PIPELINE), **kw)


@pytest.mark.parametrize("rule, field, words", [
    (_rule(tags={"BodyPart": "CHEST"}), "rule.tags",
     "expected a DICOM keyword such as BodyPartExamined, got 'BodyPart'"),
    (_rule(label="x" * 257), "rule.label", "expected at most 256 characters"),
    (_rule(output="dicom_video"), "rule.output", "expected one of dicom_series, dicom_file"),
])
def test_a_rule_with_a_wrong_field_is_refused(rule, field, words):
    with pytest.raises(InvalidArgument) as caught:
        check_rule(rule)
    assert caught.value.field == field and caught.value.message == words


@pytest.fixture
def books(tmp_path):
    rules, pushes = RuleBook(tmp_path), PushBook(tmp_path)
    yield rules, pushes
    rules.close()
    pushes.close()


def test_a_rule_naming_a_dicom_node_its_recipient_has_not_is_refused(books):
    rules, pushes = books
    asyncio.run(pushes.add_node("lab-b", "viewer", "VIEWER", "127.0.0.1", 11112))
    rule = _rule(destination="lab-b", dicom_nodes=("viewer", "n" * 300))
    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(rules.create(rule, pushes))
    assert caught.value.field == "rule.dicom_nodes[1]"
    assert caught.value.message.startswith("'lab-b' has no DICOM node 'nnnn")
    assert caught.value.message.endswith(
        "'… (it registers its nodes with `medcompute dicom node add`)")
    assert "n" * 100 not in caught.value.message          # a long name is cut
    assert not asyncio.run(rules.list())                   # nothing kept


def test_deleting_a_rule_that_does_not_exist_is_not_found(books):
    rules, _ = books
    with pytest.raises(NotFound) as caught:
        asyncio.run(rules.delete("0123456789abcdef"))
    assert caught.value.field == "rule_id"
    assert caught.value.message == "no routing rule '0123456789abcdef'"
