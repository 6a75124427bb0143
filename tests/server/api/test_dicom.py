"""Routing rules between the wire and the domain (api/dicom.py): RoutingRule messages
become domain rules, and the rules an earlier version stored as messages are upgraded."""

from __future__ import annotations

import asyncio
import functools

import pytest

from medcompute.proto.v1 import dicom_pb2, operations_pb2, processing_pb2
from medcompute.server.api.dicom import legacy_rule, rule_message, rule_of
from medcompute.server.dicomnet.routing import RuleBook
from medcompute.server.errors import InvalidArgument

pytestmark = pytest.mark.timeout(30)

LIMIT = 1 << 20


def _message(**kw) -> dicom_pb2.RoutingRule:
    process = processing_pb2.ProcessHeader(
        pipeline=[operations_pb2.Operation(gaussian=operations_pb2.GaussianOp(sigma=[2.0]))],
        device=processing_pb2.DEVICE_CPU)
    kw.setdefault("process", process)
    return dicom_pb2.RoutingRule(subscriber="s", modality="CT", tags={"BodyPartExamined": "X"},
                                 label="smooth", **kw)


def test_a_routing_rule_message_becomes_a_domain_rule_and_back():
    rule = rule_of(_message(output=dicom_pb2.ROUTING_OUTPUT_DICOM_FILE), max_image_bytes=LIMIT)
    assert rule.process.device == "cpu" and rule.process.input is None
    assert rule.output == "dicom_file" and rule.tags == {"BodyPartExamined": "X"}
    back = rule_message(rule)
    assert back.process.pipeline == _message().process.pipeline
    assert back.output == dicom_pb2.ROUTING_OUTPUT_DICOM_FILE and back.label == "smooth"


@pytest.mark.parametrize(("message", "field"), [
    (_message(output=7), "rule.output"),
    (_message(process=processing_pb2.ProcessHeader(device=9)), "rule.process.device"),
])
def test_wire_mistakes_in_a_rule_name_the_field(message, field):
    with pytest.raises(InvalidArgument) as err:
        rule_of(message, max_image_bytes=LIMIT)
    assert err.value.field == field


def test_rules_stored_as_messages_are_upgraded(tmp_path):
    book = RuleBook(tmp_path)
    old = _message(rule_id="r1", created_at=5.0)

    async def main():
        await book.db.write(lambda tx: tx.execute(
            "INSERT INTO dicom_rule VALUES (?, ?, ?, ?)",
            ("r1", "s", 5.0, old.SerializeToString())))
        created = await book.create(rule_of(_message(), max_image_bytes=LIMIT))
        legacy = functools.partial(legacy_rule, max_image_bytes=LIMIT)
        assert await book.upgrade(legacy) == 1
        assert await book.upgrade(legacy) == 0              # once
        return created, await book.list("s")

    try:
        created, rules = asyncio.run(main())
    finally:
        book.close()
    assert [r.rule_id for r in rules] == ["r1", created.rule_id]
    assert rules[0].created_at == 5.0 and rules[0].modality == "CT"
    assert rules[0].process.pipeline == tuple(old.process.pipeline)
    assert rules[1] == created
