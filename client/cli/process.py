"""``medcompute process --each``: every file of the inputs is its own image, in one batch
request; one result file per image."""

from __future__ import annotations

import sys
from pathlib import Path

from medcompute.client import exits
from medcompute.client.output import message_json, print_json

__all__ = ["each_inputs", "process_each"]

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

    try:
        named = each_inputs(args.inputs)
    except ValueError as exc:
        print(f"medcompute process: {exc}", file=sys.stderr)
        return exits.USAGE
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        print(f"medcompute process: {out}: with --each, -o names a folder", file=sys.stderr)
        return exits.USAGE
    out.mkdir(parents=True, exist_ok=True)
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
