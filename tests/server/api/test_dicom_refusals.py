"""The refusal of api/dicom.py's routing rules: a rule's processing request names no input
(the series it receives is the input)."""

from __future__ import annotations

import pytest

from medcompute.client.ops import parse_op
from medcompute.proto.v1 import dicom_pb2, image_pb2, processing_pb2
from medcompute.server.api.dicom import rule_of
from medcompute.server.errors import InvalidArgument

PROCESS = processing_pb2.ProcessHeader(pipeline=[parse_op("gaussian:sigma=1")])


def test_a_rule_with_an_output_the_enum_has_not_is_refused():
    rule = dicom_pb2.RoutingRule(subscriber="hospital-a", output=9, process=PROCESS)
    with pytest.raises(InvalidArgument) as caught:
        rule_of(rule, max_image_bytes=1 << 20)
    assert caught.value.field == "rule.output"
    assert caught.value.message == ("expected one of ROUTING_OUTPUT_UNSPECIFIED, "
                                    "ROUTING_OUTPUT_DERIVED_SERIES, ROUTING_OUTPUT_DICOM_FILE")


def test_a_rule_whose_process_names_an_input_is_refused():
    process = processing_pb2.ProcessHeader(pipeline=[parse_op("gaussian:sigma=1")],
                                           input=image_pb2.ImageSource(image_id="img1"))
    rule = dicom_pb2.RoutingRule(subscriber="hospital-a", process=process)
    with pytest.raises(InvalidArgument) as caught:
        rule_of(rule, max_image_bytes=1 << 20)
    assert caught.value.field == "rule.process.input"
    assert caught.value.message == "leave it empty: the received series is the input"
    rule.process.ClearField("input")
    assert rule_of(rule, max_image_bytes=1 << 20).subscriber == "hospital-a"
