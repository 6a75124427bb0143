"""Operations from text (the API's text form, read by the client and by the HTTP door):
``gaussian:sigma=2``, ``gaussian:sigma_mm=[1.5,1.5,3]``, ``mip:axis=0``.

``NAME[:key=value,...]``: NAME is an operation (see ``medcompute ops``) or a
shorthand; a per-axis value is one number for all axes or ``[a,b,c]``;
enumerations take their names (``operator=scharr``, ``mode=reflect``). An operation of
a software package is ``OPERATION@PACKAGE[==VERSION]`` (``unsharp_mask@sharpen==1.0:
amount=1.5``); its parameters are numbers.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor

from medcompute.proto.v1 import operations_pb2

__all__ = ["ALIASES", "parse_op", "op_from_dict", "package_op", "to_operation",
           "operation_names"]

#: Shorthands: name -> (operation, preset parameters).
ALIASES: dict[str, tuple[str, dict[str, str]]] = {
    "mip": ("project", {"kind": "max"}),
    "minip": ("project", {"kind": "min"}),
    "log": ("laplacian", {}),
    "dog": ("bandpass", {"method": "dog"}),
    "butterworth": ("bandpass", {"method": "butterworth"}),
    "sobel": ("edge", {"operator": "sobel"}),
    "prewitt": ("edge", {"operator": "prewitt"}),
    "scharr": ("edge", {"operator": "scharr"}),
}

_OP = operations_pb2.Operation.DESCRIPTOR


def operation_names() -> list[str]:
    return [f.name for f in _OP.oneofs_by_name["op"].fields]


def _split(text: str) -> list[str]:
    """Split on commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced '[' in {text!r}")
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _scalar(fd: FieldDescriptor, value, where: str):
    if fd.type == FieldDescriptor.TYPE_ENUM:
        text = str(value).strip().upper()
        # Values carry their enum's prefix (BOUNDARY_MODE_REFLECT); the zero names it.
        prefix = fd.enum_type.values_by_number[0].name.removesuffix("UNSPECIFIED")
        names = [v.name.removeprefix(prefix) for v in fd.enum_type.values if v.number != 0]
        for v in fd.enum_type.values:
            if v.number != 0 and text in (v.name, v.name.removeprefix(prefix)):
                return v.number
        raise ValueError(f"{where}: expected one of {', '.join(n.lower() for n in names)}, "
                         f"got {value!r}")
    if fd.type == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected an integer, got {value!r}") from None
    if number != int(number):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    number = int(number)
    if fd.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64) and number < 0:
        raise ValueError(f"{where}: expected an integer >= 0, got {value!r}")
    return number


def _value(fd: FieldDescriptor, value, where: str):
    repeated = fd.is_repeated
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            if not repeated:
                raise ValueError(f"{where}: takes one value, not a list")
            value = [v for v in _split(text[1:-1])]
    if isinstance(value, (list, tuple)):
        if not repeated:
            raise ValueError(f"{where}: takes one value, not a list")
        return [_scalar(fd, v, where) for v in value]
    return [_scalar(fd, value, where)] if repeated else _scalar(fd, value, where)


def package_op(name: str, params: dict | None = None) -> operations_pb2.Operation:
    """A PackageOp from ``OPERATION@PACKAGE[==VERSION]`` and numeric parameters."""
    operation, _, package = name.strip().partition("@")
    package, _, version = package.partition("==")
    if not operation or not package:
        raise ValueError(f"expected OPERATION@PACKAGE[==VERSION], got {name!r}")
    values = {}
    for k, v in (params or {}).items():
        try:
            values[k] = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{operation}.{k}: expected a number, got {v!r}") from None
    return operations_pb2.Operation(package=operations_pb2.PackageOp(
        package=package.strip(), version=version.strip(), operation=operation.strip(),
        params=values))


def op_from_dict(name: str, params: dict | None = None) -> operations_pb2.Operation:
    """An Operation from a name (or shorthand) and a dict of parameters."""
    if "@" in name:
        return package_op(name, params)
    key = name.strip().lower()
    preset: dict = {}
    if key in ALIASES:
        key, preset = ALIASES[key]
    field = _OP.fields_by_name.get(key)
    if field is None:
        known = ", ".join(operation_names() + sorted(ALIASES))
        raise ValueError(f"unknown operation {name!r}; expected one of {known}")
    msg_desc = field.message_type
    cls = getattr(operations_pb2, msg_desc.name)
    kwargs = {}
    for k, v in {**preset, **(params or {})}.items():
        fd = msg_desc.fields_by_name.get(k)
        if fd is None:
            known = ", ".join(f.name for f in msg_desc.fields)
            raise ValueError(f"{key}: unknown parameter {k!r}; expected one of {known}")
        kwargs[k] = _value(fd, v, f"{key}.{k}")
    return operations_pb2.Operation(**{key: cls(**kwargs)})


def parse_op(text: str) -> operations_pb2.Operation:
    """An Operation from ``NAME[:key=value,...]``; ValueError says what is wrong."""
    name, _, rest = text.partition(":")
    if not name.strip():
        raise ValueError(f"expected NAME[:key=value,...], got {text!r}")
    params = {}
    for item in _split(rest):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{name}: expected key=value, got {item!r}")
        params[key.strip()] = value.strip()
    return op_from_dict(name, params)


def to_operation(op) -> operations_pb2.Operation:
    """Accept an Operation, a ``"name:k=v"`` string, or a ``{"op": name, ...}`` dict."""
    if isinstance(op, operations_pb2.Operation):
        return op
    if isinstance(op, str):
        return parse_op(op)
    if isinstance(op, dict):
        params = dict(op)
        name = params.pop("op", None)
        if name is None:
            raise ValueError(f"an operation dict needs an 'op' key, got {op!r}")
        return op_from_dict(name, params)
    raise TypeError(f"expected an Operation, a string or a dict, got {type(op).__name__}")
