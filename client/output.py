"""What ``--json`` prints, the same way in every command.

A message is printed in the proto3 JSON mapping with the .proto field names and every
field present (zeros and empty lists included; an unset ``optional`` field is left out),
so the keys of each command's JSON are the fields of the message it names, fixed by the
v1 protos (``buf breaking`` guards them). Enum values are their full names
(``"JOB_STATE_SUCCEEDED"``); 64-bit integers are strings, as the mapping has them.
"""

from __future__ import annotations

import json
import sys

from google.protobuf import json_format

__all__ = ["message_json", "print_json"]


def message_json(message) -> dict:
    """``message`` as the proto3 JSON mapping: field names as in the .proto, all present."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def print_json(data, *, lines: bool = False) -> None:
    """Print ``data`` as indented JSON, or as one compact line (``lines``, for streams)."""
    print(json.dumps(data) if lines else json.dumps(data, indent=2), file=sys.stdout,
          flush=lines)
