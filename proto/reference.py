"""Write the gRPC API's reference, a Markdown page, from the protos and their comments.

    python -m medcompute.proto.reference --out docs/reference/grpc-api.md

protoc compiles proto/medcompute/v1/*.proto into a descriptor set with source info
(``--include_source_info``), which keeps every comment with the path of what it
describes; the page lists each file's services (their RPCs, request and response types
and streaming), messages (their fields: number, type, label, oneof) and enums, each with
its comment. Nothing of the page is written by hand: `make docs` regenerates it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "medcompute" / "v1"

# FileDescriptorProto / DescriptorProto / ServiceDescriptorProto field numbers, the
# elements of a SourceCodeInfo.Location path.
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM, _ONEOF = 2, 3, 4, 8
_METHOD, _ENUM_VALUE = 2, 2

_TYPES = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64",
          7: "fixed32", 8: "bool", 9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32",
          16: "sfixed64", 17: "sint32", 18: "sint64"}


def descriptor_set():
    """The v1 protos compiled into a ``FileDescriptorSet`` with their comments."""
    import grpc_tools
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    protos = sorted(SOURCES.glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "v1.binpb"
        args = ["protoc", f"-I{HERE}", f"-I{include}", "--include_source_info",
                f"--descriptor_set_out={out}", *[str(p.relative_to(HERE)) for p in protos]]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        files = descriptor_pb2.FileDescriptorSet()
        files.ParseFromString(out.read_bytes())
    return files


def _comments(file) -> dict[tuple[int, ...], str]:
    found = {}
    for loc in file.source_code_info.location:
        text = (loc.leading_comments or loc.trailing_comments).strip()
        if text:
            found[tuple(loc.path)] = " ".join(line.strip() for line in text.splitlines())
    return found


def _anchor(name: str) -> str:
    return name.lower().replace(".", "")


_MAP_ENTRIES: dict[str, object] = {}   # ".pkg.Msg.FooEntry" -> its descriptor, per render


def _collect_maps(msg, prefix: str) -> None:
    for nested in msg.nested_type:
        full = f"{prefix}.{msg.name}.{nested.name}"
        if nested.options.map_entry:
            _MAP_ENTRIES[full] = nested
        _collect_maps(nested, f"{prefix}.{msg.name}")


def _type_name(field, package: str) -> str:
    entry = _MAP_ENTRIES.get(field.type_name)
    if entry is not None:
        key, value = entry.field
        return (f"map<{_type_name(key, package).strip('`')}, "
                f"{_type_name(value, package).strip('`')}>").join("``")
    if field.type_name:
        name = field.type_name.lstrip(".")
        short = name[len(package) + 1:] if name.startswith(package + ".") else name
        if name.startswith(package + "."):
            return f"[{short}](#{_anchor(short)})"
        return f"`{short}`"
    return f"`{_TYPES.get(field.type, str(field.type))}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _message(lines, msg, path, prefix, comments, package):
    name = f"{prefix}{msg.name}"
    lines += [f"### {name}", ""]
    if comments.get(path):
        lines += [comments[path], ""]
    if msg.field:
        lines += ["| field | number | type | description |", "|---|---|---|---|"]
        for i, field in enumerate(msg.field):
            label = "repeated " if field.label == 3 and field.type_name not in _MAP_ENTRIES else ""
            kind = _type_name(field, package)
            if field.HasField("oneof_index") and not field.proto3_optional:
                note = f"one of `{msg.oneof_decl[field.oneof_index].name}`. "
            elif field.proto3_optional:
                note = "optional. "
            else:
                note = ""
            text = comments.get(path + (_FIELD, i), "")
            lines.append(f"| `{field.name}` | {field.number} | {label}{kind} | "
                         f"{_cell(note + text)} |")
        lines.append("")
    for i, nested in enumerate(msg.nested_type):
        if not nested.options.map_entry:
            _message(lines, nested, path + (_NESTED, i), name + ".", comments, package)
    for i, enum in enumerate(msg.enum_type):
        _enum(lines, enum, path + (_NESTED_ENUM, i), name + ".", comments)


def _enum(lines, enum, path, prefix, comments):
    lines += [f"### {prefix}{enum.name}", ""]
    if comments.get(path):
        lines += [comments[path], ""]
    lines += ["| value | number | description |", "|---|---|---|"]
    for i, value in enumerate(enum.value):
        text = comments.get(path + (_ENUM_VALUE, i), "")
        lines.append(f"| `{value.name}` | {value.number} | {_cell(text)} |")
    lines.append("")


def render(files) -> str:
    lines = ["# gRPC API reference", "",
             "Generated by `make docs` (`python -m medcompute.proto.reference`) from the "
             "comments of `proto/medcompute/v1/*.proto`; do not edit. The conventions every "
             "service follows are in [The API's conventions](../api-conventions.md).", ""]
    _MAP_ENTRIES.clear()
    for file in files.file:
        for msg in file.message_type:
            _collect_maps(msg, "." + file.package)
    for file in files.file:
        if not file.name.startswith("medcompute/"):
            continue
        comments = _comments(file)
        lines += [f"## {Path(file.name).name}", ""]
        if comments.get((12,)):   # the comment above `syntax` (field 12 of the file)
            lines += [comments[(12,)], ""]
        for si, service in enumerate(file.service):
            path = (_SERVICE, si)
            lines += [f"### {service.name}", ""]
            if comments.get(path):
                lines += [comments[path], ""]
            lines += ["| RPC | request | response | description |", "|---|---|---|---|"]
            for mi, method in enumerate(service.method):
                req = method.input_type.lstrip(".").rsplit(".", 1)[-1]
                res = method.output_type.lstrip(".").rsplit(".", 1)[-1]
                req_s = ("stream " if method.client_streaming else "") + f"[{req}](#{_anchor(req)})"
                res_s = ("stream " if method.server_streaming else "") + f"[{res}](#{_anchor(res)})"
                text = comments.get(path + (_METHOD, mi), "")
                lines.append(f"| `{method.name}` | {req_s} | {res_s} | {_cell(text)} |")
            lines.append("")
        for i, msg in enumerate(file.message_type):
            _message(lines, msg, (_MESSAGE, i), "", comments, file.package)
        for i, enum in enumerate(file.enum_type):
            _enum(lines, enum, (_ENUM, i), "", comments)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the Markdown file to write")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(descriptor_set()))
    print(args.out, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
