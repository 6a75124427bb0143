"""``medcompute print``: hard copy of a stored image on a DICOM printer.

    medcompute print IMAGE_ID --printer NODE [--format 'STANDARD\\2,2'] [--film-size 8INX10IN]
                     [--orientation portrait|landscape] [--copies N] [--slices 0,4,8 | --mip]
                     [--bits 8|12] [--medium PAPER]
    medcompute print --jobs
"""

from __future__ import annotations

import sys

from medcompute.client.channel import connection
from medcompute.client.output import message_json, print_json

__all__ = ["add_commands"]


def _slices(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--slices: expected numbers separated by commas, got {text!r}") from None


def _show(job) -> str:
    what = "MIP" if job.mip else (f"slices {','.join(map(str, job.slices))}" if job.slices
                                  else "every slice")
    return (f"print job {job.job_id}: {job.status}, {job.sheets} sheet(s) of {job.film_size} "
            f"{job.orientation.lower()}, {job.display_format}, {what}; printer "
            f"{job.printer_status or '?'} {job.printer_status_info}".rstrip())


def _print(args) -> int:
    from medcompute.client.printing import PrintClient

    with PrintClient(args.server, timeout=args.timeout, **connection(args)) as client:
        if args.jobs:
            jobs = client.jobs()
            if args.json:
                print_json([message_json(j) for j in jobs])
            for job in [] if args.json else jobs:
                print(f"{job.image_id}  {_show(job)}")
            return 0
        if not args.image_id or not args.printer:
            print("medcompute print: give IMAGE_ID and --printer NODE (or --jobs)",
                  file=sys.stderr)
            return 2
        try:
            slices = _slices(args.slices)
        except ValueError as exc:
            print(f"medcompute print: {exc}", file=sys.stderr)
            return 2
        job = client.print_image(args.image_id, args.printer, display_format=args.format,
                                 film_size=args.film_size, orientation=args.orientation,
                                 copies=args.copies, slices=slices, mip=args.mip,
                                 bits=args.bits, medium_type=args.medium)
    if args.json:
        print_json(message_json(job))
    else:
        print(_show(job))
    return 0


def add_commands(sub, client_options) -> None:
    p = sub.add_parser("print", help="print a stored image on a DICOM printer (a node)",
                       description="Compose film sheets from a stored image (its slices in "
                       "the display format's image boxes, or a MIP) and print them over "
                       "DICOM Basic Grayscale Print Management on one of your DICOM nodes "
                       "(`medcompute dicom node add`).")
    p.add_argument("image_id", nargs="?", default="", metavar="IMAGE_ID",
                   help="the stored image to print")
    p.add_argument("--printer", default="", metavar="NODE", help="your DICOM node's name")
    p.add_argument("--format", default="", metavar="STANDARD\\C,R",
                   help="display format: columns, rows of image boxes (default STANDARD\\1,1)")
    p.add_argument("--film-size", default="", help="a DICOM Film Size ID (default 8INX10IN)")
    p.add_argument("--orientation", default="", help="portrait (default) or landscape")
    p.add_argument("--copies", type=int, default=0, help="default 1")
    p.add_argument("--slices", default="", metavar="I,J,...",
                   help="slices along the first axis (default: every slice)")
    p.add_argument("--mip", action="store_true", help="one maximum-intensity projection")
    p.add_argument("--bits", type=int, default=0, help="8 (default) or 12")
    p.add_argument("--medium", default="", help="PAPER, CLEAR FILM, BLUE FILM")
    p.add_argument("--jobs", action="store_true", help="list your print jobs instead")
    p.add_argument("--json", action="store_true", help="as JSON: the PrintJob")
    client_options(p)
    p.set_defaults(func=_print)
