"""Operations from text (``gaussian:sigma=2``): the form lives with the API,
:mod:`medcompute.proto.ops`, where the server's doors read it too; re-exported here."""

from medcompute.proto.ops import (
    ALIASES,
    op_from_dict,
    operation_names,
    package_op,
    parse_op,
    to_operation,
)

__all__ = ["ALIASES", "parse_op", "op_from_dict", "package_op", "to_operation",
           "operation_names"]
