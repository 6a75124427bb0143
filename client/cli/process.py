"""``medcompute process`` and ``medcompute ops``: process an image and write the result,
or, with ``--each``, every file of the inputs as its own image, in one batch request, one
result file per image; and the operations the server offers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from medcompute.client import exits
from medcompute.client.cli.common import (
    add_process_options,
    add_request_arguments,
    kept_summary,
    open_client,
    process_options,
    where_summary,
)
from medcompute.client.ops import ALIASES
from medcompute.client.output import message_json, print_json

__all__ = ["add_commands", "each_inputs", "process_each"]

_SKIP = {".txt", ".json", ".md", ".xml", ".csv", ".png", ".jpg"}


def each_inputs(inputs: list[str]) -> list[tuple[str, str]]:
    """(name, input) of every image: a folder gives each of its files (sorted by name),
    a file and an ``id:ID`` give themselves. ValueError for a missing path."""
    out = []
    for text in inputs:
        if text.startswith("id:"):
            out.append((text[3:], text))
            continue
        path = Path(text)
        if not path.exists():
            raise ValueError(f"{path}: no such file or folder")
        files = [path] if path.is_file() else sorted(
            p for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in _SKIP)
        if not files:
            raise ValueError(f"{path}: no files in this folder")
        out.extend((p.stem if p.suffix.lower() in (".npy", ".dcm", ".dicom") else p.name,
                    str(p)) for p in files)
    names = [name for name, _ in out]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"two inputs would write the same result file: {', '.join(dupes)}")
    return out


def process_each(args, client, ops, options: dict) -> int:
    """Process every image of ``args.inputs`` alone with ``ops``; write ``-o DIR/NAME.npy``
    (or ``.dcm`` with ``--each-format dcm``). Exit 1 when some image's job failed."""
    import numpy as np

    from medcompute.client.io import make_folder

    try:
        named = each_inputs(args.inputs)
    except ValueError as exc:
        print(f"medcompute process: {exc}", file=sys.stderr)
        return exits.USAGE
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        print(f"medcompute process: {out}: with --each, -o names a folder", file=sys.stderr)
        return exits.USAGE
    make_folder(out)
    suffix = ".dcm" if args.each_format == "dcm" else ".npy"
    output = "dicom_file" if suffix == ".dcm" else "array"
    status, report = exits.OK, []
    items = client.process_many([source for _, source in named], ops, output=output,
                                streams=args.streams, **options)
    for item in items:
        name = named[item.index][0]
        if not item.ok:
            status = exits.JOB_FAILED
            print(f"medcompute process: {named[item.index][1]}: {item.error.code.name}: "
                  f"{item.error.details}", file=sys.stderr)
            report.append({"index": item.index, "input": named[item.index][1],
                           "job_id": item.job_id, "failure": {
                               "code": item.error.code.name, "message": item.error.details}})
            continue
        target = out / f"{name}{suffix}"
        if output == "array":
            np.save(target, item.result.array)
        else:
            target.write_bytes(item.result.files[0])
        report.append({"index": item.index, "input": named[item.index][1],
                       "output": str(target), "result": message_json(item.result.header)})
        if args.quiet and not args.json:
            print(item.job_id)
        elif not args.json:
            print(f"job {item.job_id}: {named[item.index][1]} -> {target}", file=sys.stderr)
    if args.json:
        print_json(sorted(report, key=lambda r: r["index"]))
    elif not args.quiet:
        done = sum(1 for r in report if "result" in r)
        print(f"{done} of {len(named)} image(s) processed into {out}", file=sys.stderr)
    return status


def _ops(args) -> int:
    with open_client(args) as client:
        ops = client.operations()
    if args.json:
        print(json.dumps(ops, indent=2))
        return 0
    for op in ops:
        package = f" ({op['package']} {op.get('version', '')})" if op.get("package") else ""
        print(f"{op['name']}{package}: {op.get('summary', '')}")
        for p in op.get("parameters", []):
            bits = [p.get("type", "")]
            if p.get("per_axis"):
                bits.append("per axis")
            if p.get("unit"):
                bits.append(p["unit"])
            if p.get("default"):
                bits.append(f"default {p['default']}")
            if p.get("choices"):
                bits.append("one of " + "|".join(p["choices"]))
            print(f"    {p['name']:<16} {', '.join(bits)}: {p.get('description', '')}")
    print("\nshorthands:")
    for alias, (name, preset) in ALIASES.items():
        extra = ",".join(f"{k}={v}" for k, v in preset.items())
        print(f"    {alias:<12} = {name}{':' + extra if extra else ''}")
    return 0


def _process(args) -> int:
    import numpy as np

    from medcompute.client.io import check_output, make_folder, output_kind, write_dicom
    from medcompute.client.ops import parse_op

    try:
        ops = [parse_op(text) for text in args.op]
        out = Path(args.output)
        kind = "npy" if args.each else output_kind(out)
        check_output(out)
    except ValueError as exc:
        print(f"medcompute process: {exc}", file=sys.stderr)
        return exits.USAGE
    if args.each:
        with open_client(args) as client:
            try:
                return process_each(args, client, ops, dict(
                    spacing=args.spacing, operands=[args.operand] if args.operand else (),
                    device=args.device, allow_fallback=args.allow_fallback,
                    output_dtype=args.output_dtype, compression=args.compression,
                    **process_options(args)))
            except ValueError as exc:
                print(f"medcompute process: {exc}", file=sys.stderr)
                return exits.USAGE
    output = "array" if kind == "npy" else kind
    progress = sys.stderr.isatty() and not args.quiet
    with open_client(args) as client:
        try:
            result = client.process(
                args.inputs if len(args.inputs) > 1 else args.inputs[0], ops,
                spacing=args.spacing, operands=[args.operand] if args.operand else (),
                device=args.device, allow_fallback=args.allow_fallback,
                output_dtype=args.output_dtype, output=output,
                compression=args.compression, progress=progress, **process_options(args))
        except ValueError as exc:
            print(f"medcompute process: {exc}", file=sys.stderr)
            return exits.USAGE
    if kind == "npy":
        make_folder(out.parent)
        np.save(out, result.array)
        written = [out]
    else:
        written = write_dicom(result.files, out)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif args.quiet:
        print(result.job_id)
    else:
        print(f"job {result.job_id}: {len(written)} file(s) written to {out}", file=sys.stderr)
        for a in result.applied:
            print(f"  applied {a['summary']}", file=sys.stderr)
        if result.header.fallback.happened:
            print(f"  fell back to CPU: {result.header.fallback.reason}", file=sys.stderr)
        if kept := kept_summary(result):
            print(kept, file=sys.stderr)
        print(where_summary(result), file=sys.stderr)
    return 0


def add_commands(sub, client_options) -> None:
    """Add ``process`` and ``ops`` to the ``medcompute`` parser."""
    proc = sub.add_parser("process", help="process an image and write the result",
                          description="Send an image and a pipeline of operations; write the "
                          "result.")
    add_request_arguments(proc)
    proc.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                      help="result: .npy (array), .dcm (one DICOM file) or a folder "
                      "(a DICOM derived series); DICOM output needs DICOM input")
    proc.add_argument("--json", action="store_true",
                      help="print the result header (ResultHeader: applied operations, usage) "
                      "as JSON")
    proc.add_argument("-q", "--quiet", action="store_true",
                      help="no progress or summary; print the job id only")
    each = proc.add_argument_group("many images in one request (--each)")
    each.add_argument("--each", action="store_true",
                      help="every file of the inputs (each file of a folder: a folder of "
                      "slices) is its own image and job, sent as one batch request; -o names "
                      "a folder that gets one result per image, named after its input; "
                      "--json prints a list of {index, input, output, result} (or failure); "
                      "-q prints the job ids; exit 1 when some image's job failed")
    each.add_argument("--each-format", choices=["npy", "dcm"], default="npy",
                      help="with --each: write each result as NAME.npy (default) or, for "
                      "DICOM input, as NAME.dcm (a derived DICOM file)")
    each.add_argument("--streams", type=int, default=1, metavar="N",
                      help="with --each: send the images as N concurrent calls (with a "
                      "round-robin --server ipv4:HOST:A,HOST:B each goes to the next server)")
    client_options(proc)
    proc.set_defaults(func=_process)

    ops = sub.add_parser("ops", help="list the operations, their parameters, units, defaults")
    ops.add_argument("--json", action="store_true",
                     help="as JSON: a list of OperationSpec (name, summary, parameters)")
    client_options(ops)
    ops.set_defaults(func=_ops)
    add_process_options(proc)
