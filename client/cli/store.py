"""``medcompute store ...``: the image store from the command line.

    medcompute store put PATH... [--series] [--retention 30d] [-q]
    medcompute store find [--patient-id ID] [--study UID] [--series UID] [--modality M]
                          [--from DATE] [--to DATE] [--kind original|derived] [-q]
    medcompute store get ID -o OUT          (.npy voxels, .dcm or a folder DICOM, .png preview)
                         [--version NAME|PURPOSE [--level N]]   (a compressed version: DICOM,
                                   or .npy voxels of an image registered as a raw array)
    medcompute store info ID
    medcompute store rm ID...
    medcompute store verify | backup DEST | purge [--dry-run]
    medcompute store usage | capacity SUBSCRIBER SIZE         (see capacity.py)
    medcompute store tier ID hot|cold | tier-policy          (see tiers.py)
    medcompute store status ID [STATUS]                      (see studies.py)

The store's own commands; ``medcompute`` adds the ``usage``, ``capacity``, ``tier``,
``tier-policy`` and ``status`` commands of capacity.py, tiers.py and studies.py to
``store`` too. The options ``process`` takes for the store (``--store``, ``--retention``,
``--recompute``) are in common.py; ``process id:ID`` processes a stored image.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from medcompute.client import exits
from medcompute.client.channel import connection
from medcompute.client.cli.common import parse_duration
from medcompute.client.output import print_json

__all__ = ["add_store_commands"]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _line(image) -> str:
    m = image.metadata
    shape = "x".join(str(n) for n in image.shape)
    what = " ".join(v for v in (m.get("modality", ""), m.get("acquisition_date", "")) if v)
    derived = f" from {image.message.source_image_id}" if image.message.source_image_id else ""
    return (f"{image.image_id}  {image.kind:<8}  {what or '-':<12}  {shape} "
            f"{image.dtype.name}{derived}")


def _fail(command: str, message) -> int:
    print(f"medcompute store {command}: {message}", file=sys.stderr)
    return exits.USAGE


def _items(paths: list[str], series: bool) -> list:
    """What each registration sends: a file, a folder (one series), or all paths at once."""
    if series:
        return [paths]
    items: list = []
    for text in paths:
        p = Path(text)
        if not p.is_dir():
            items.append(text)
            continue
        folders = [p] + sorted(d for d in p.rglob("*") if d.is_dir())
        for folder in folders:
            if any(f.is_file() and not f.name.startswith(".") for f in folder.iterdir()):
                items.append(str(folder))
    return items


def _put(args) -> int:
    from medcompute.client import ServiceError
    from medcompute.client.store import StoreClient

    metadata = {k: v for k, v in (("modality", args.modality), ("patient_id", args.patient_id),
                                  ("acquisition_date", args.date),
                                  ("description", args.description)) if v}
    progress = sys.stderr.isatty() and not args.quiet
    failed = exits.OK
    stored = []
    with StoreClient(args.server, timeout=args.timeout, **connection(args)) as store:
        for item in _items(args.paths, args.series):
            name = item if isinstance(item, str) else f"{len(item)} paths"
            try:
                image = store.register(item, spacing=args.spacing, metadata=metadata,
                                       retention=args.retention, compression=args.compression,
                                       progress=progress)
            except (ValueError, ServiceError) as exc:
                code = exits.for_status(exc.code) if isinstance(exc, ServiceError) \
                    else exits.USAGE
                failed = failed or code
                print(f"medcompute store put: {name}: {exc}", file=sys.stderr)
                continue
            stored.append(image)
            if args.quiet:
                print(image.image_id)
            elif not args.json:
                note = "already stored" if image.existing else "stored"
                print(f"{note} {_line(image)}  <- {name}")
                if image.differing_fields:
                    print(f"  registered before with other metadata (kept unchanged): "
                          f"{', '.join(image.differing_fields)}")
    if args.json:
        print(json.dumps([i.to_dict() for i in stored], indent=2))
    return failed


def _find(args) -> int:
    from medcompute.client.store import StoreClient

    filters = {k: v for k, v in (
        ("patient_id", args.patient_id), ("study_instance_uid", args.study),
        ("series_instance_uid", args.series), ("modality", args.modality),
        ("date_from", args.date_from), ("date_to", args.date_to),
        ("registered_by", args.registered_by), ("source_image_id", args.source)) if v}
    with StoreClient(args.server, timeout=args.timeout, **connection(args)) as store:
        images = store.find(limit=args.limit, kind=args.kind, **filters)
    if args.json:
        print(json.dumps([i.to_dict() for i in images], indent=2))
    for image in images if not args.json else ():
        print(image.image_id if args.quiet else _line(image))
    return 0


def _get(args) -> int:
    from medcompute.client.io import write_dicom
    from medcompute.client.store import StoreClient

    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix not in ("", ".npy", ".dcm", ".dicom", ".png") and not out.is_dir():
        return _fail("get", f"{out}: expected .npy (voxels), .dcm or a folder (DICOM), "
                     ".png (preview)")
    progress = sys.stderr.isatty() and not args.quiet
    if args.version and suffix == ".png":
        return _fail("get", "--version: a version is written as DICOM files (.dcm or a folder) "
                     "or, of an image registered as a raw array, as voxels (.npy)")
    with StoreClient(args.server, timeout=args.timeout, **connection(args)) as store:
        if suffix == ".png":
            preview = store.preview(args.image_id, max_size=args.size or 0)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(preview.png)
            written, image = [out], store.info(args.image_id)
        elif suffix == ".npy":
            import numpy as np

            fetched = store.get(args.image_id, compression=args.compression, progress=progress,
                                version=args.version or "", resolution_level=args.level)
            if fetched.array is None:
                return _fail("get", "--version: a version of a DICOM image is written as DICOM "
                             "files (.dcm or a folder); .npy takes versions of raw arrays")
            _print_version(fetched, args)
            out.parent.mkdir(parents=True, exist_ok=True)
            np.save(out, fetched.array)
            written, image = [out], fetched.image
        else:
            fetched = store.get(args.image_id, dicom=True, compression=args.compression,
                                progress=progress, version=args.version or "",
                                resolution_level=args.level)
            try:
                written = write_dicom(fetched.files, out)
            except ValueError as exc:
                return _fail("get", exc)
            image = fetched.image
            _print_version(fetched, args)
    if args.json:
        print(json.dumps(image.to_dict(), indent=2))
    elif not args.quiet:
        print(f"{_line(image)}: {len(written)} file(s) written to {out}", file=sys.stderr)
    return 0


def _print_version(fetched, args) -> None:
    if fetched.version and not args.quiet:
        v = fetched.version
        error = ("bit-exact" if v.get("lossless") else
                 f"max error {v.get('max_error', 0):g}, PSNR {v.get('psnr_db', 0):.1f} dB")
        print(f"version {v['name']} ({v.get('purpose', '')}): compression ratio "
              f"{v.get('compression_ratio', 0):.1f}, {error}, resolution level "
              f"{fetched.resolution_level}", file=sys.stderr)


def _info(args) -> int:
    from medcompute.client.store import StoreClient

    with StoreClient(args.server, timeout=args.timeout, **connection(args)) as store:
        image = store.info(args.image_id)
    print(json.dumps(image.to_dict(), indent=2))
    return 0


def _rm(args) -> int:
    from medcompute.client import ServiceError
    from medcompute.client.store import StoreClient

    status, deleted = exits.OK, []
    with StoreClient(args.server, timeout=args.timeout, **connection(args)) as store:
        for image_id in args.image_ids:
            try:
                freed = store.delete(image_id)
            except ServiceError as exc:
                status = status or exits.for_status(exc.code)
                print(f"medcompute store rm: {image_id}: {exc}", file=sys.stderr)
                continue
            deleted.append({"image_id": image_id, "freed_bytes": freed})
            if args.quiet:
                print(image_id)
            elif not args.json:
                print(f"deleted {image_id} ({_size(freed)} freed)")
    if args.json:
        print_json(deleted)
    return status


def _verify(args) -> int:
    from medcompute.client.store import StoreClient

    with StoreClient(args.server, timeout=args.timeout, **connection(args)) as store:
        report = store.verify()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['images']} image(s), {report['blobs']} blob(s), "
              f"{_size(report['bytes'])} checked; {len(report['problems'])} problem(s)")
        for p in report["problems"]:
            print(f"  image {p.get('image_id', '')}: blob {p.get('blob', '')}: "
                  f"{p.get('problem', '')}")
        if report["unreferenced_blobs"]:
            print(f"  {report['unreferenced_blobs']} blob file(s) no image refers to "
                  "(removed when the server starts)")
    return exits.PROBLEMS if report["problems"] else exits.OK


def _backup(args) -> int:
    from medcompute.client.store import StoreClient

    with StoreClient(args.server, timeout=args.timeout, **connection(args)) as store:
        report = store.backup(str(Path(args.destination).resolve()))
    if args.json:
        print_json(report)
        return exits.OK
    print(f"backed up {report['images']} image(s), {report['blobs']} blob(s), "
          f"{_size(report['bytes'])} to {report['destination']}")
    return 0


def _purge(args) -> int:
    from medcompute.client.store import StoreClient

    with StoreClient(args.server, timeout=args.timeout, **connection(args)) as store:
        report = store.purge(dry_run=args.dry_run)
    if args.json:
        print_json(report)
        return exits.OK
    if args.quiet:
        for image_id in report["image_ids"]:
            print(image_id)
        return exits.OK
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(report['image_ids'])} expired image(s), "
          f"{_size(report['freed_bytes'])} {'to free' if args.dry_run else 'freed'}")
    for image_id in report["image_ids"]:
        print(f"  {image_id}")
    return 0


def add_store_commands(sub, client_options) -> None:
    """Add ``store`` and its subcommands to the ``medcompute`` parser; its subparsers, for
    the commands other modules add under ``store``."""
    store = sub.add_parser("store", help="register, find, fetch and delete stored images",
                           description="The server's image store: register images once, "
                           "then process them by id (`medcompute process id:ID`).")
    cmds = store.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    compression = {"choices": ["none", "zstd", "blosc"], "default": "none",
                   "help": "lossless compression of the transfer (default none)"}

    put = cmds.add_parser("put", help="register DICOM files, series folders or .npy arrays",
                          description="Register each PATH: a DICOM file (single- or "
                          "multi-frame), a folder of one series (subfolders are series of "
                          "their own), or a .npy array. The same instance twice keeps its id.")
    put.add_argument("paths", nargs="+", metavar="PATH",
                     help="DICOM files, folders of one series each, or .npy arrays")
    put.add_argument("--series", action="store_true",
                     help="all PATHs are the files of one series (one stored volume)")
    put.add_argument("--spacing", type=float, nargs="+", metavar="MM",
                     help="voxel spacing in mm per axis (DICOM: from the files)")
    put.add_argument("--modality", help="for .npy arrays: the modality (CT, MR ...)")
    put.add_argument("--patient-id", help="for .npy arrays: the patient id")
    put.add_argument("--date", help="for .npy arrays: the acquisition date (YYYYMMDD)")
    put.add_argument("--description", help="free text kept with the image")
    put.add_argument("--retention", type=parse_duration, metavar="DURATION",
                     help="keep for this long, then purge (3600, 12h, 30d, 1y)")
    put.add_argument("--compression", **compression)
    put.add_argument("--json", action="store_true", help="print what was stored as JSON")
    put.add_argument("-q", "--quiet", action="store_true", help="print only the ids")
    put.set_defaults(func=_put)

    find = cmds.add_parser("find", help="list stored images matching every filter",
                           description="List your stored images, oldest first.")
    find.add_argument("--patient-id", help="only this patient's images")
    find.add_argument("--study", metavar="UID", help="StudyInstanceUID")
    find.add_argument("--series", metavar="UID", help="SeriesInstanceUID")
    find.add_argument("--modality", help="only this modality (CT, MR ...)")
    find.add_argument("--from", dest="date_from", metavar="DATE",
                      help="acquired on or after (YYYYMMDD or YYYY-MM-DD)")
    find.add_argument("--to", dest="date_to", metavar="DATE", help="acquired on or before")
    find.add_argument("--registered-by", metavar="SUBSCRIBER",
                      help="only images this subscriber registered (admin)")
    find.add_argument("--kind", choices=["any", "original", "derived"], default="any",
                      help="originals, derived results or both (default)")
    find.add_argument("--source", metavar="ID", help="images derived from this one")
    find.add_argument("--limit", type=int, default=None, help="at most this many")
    find.add_argument("--json", action="store_true", help="as JSON, with all metadata")
    find.add_argument("-q", "--quiet", action="store_true", help="print only the ids")
    find.set_defaults(func=_find)

    get = cmds.add_parser("get", help="fetch a stored image's voxels, DICOM or preview",
                          description="Write a stored image: OUT.npy the voxels; OUT.dcm or a "
                          "folder its DICOM files (the originals, or a derived series); "
                          "OUT.png a preview.")
    get.add_argument("image_id", metavar="ID", help="the id `store put` printed")
    get.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="a .npy file, or a folder (ending in /) for DICOM files")
    get.add_argument("--size", type=int, help="preview: longest edge in pixels (default 256)")
    get.add_argument("--version", metavar="NAME",
                     help="a compressed version by name or purpose (lossless, review, thumbnail "
                          "or the server's own; default: the original), as DICOM; .npy "
                          "for an image registered as a raw array")
    get.add_argument("--level", type=int, default=0, metavar="N",
                     help="with --version: a lower resolution level, the image reduced by 2**N "
                          "per axis (only the bytes it needs are sent)")
    get.add_argument("--compression", **compression)
    get.add_argument("--json", action="store_true", help="print the image's metadata as JSON")
    get.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    get.set_defaults(func=_get)

    info = cmds.add_parser("info", help="a stored image's metadata, as JSON")
    info.add_argument("image_id", metavar="ID", help="the id `store put` printed")
    info.add_argument("--json", action="store_true",
                      help="as JSON (the default and only form: the StoredImage)")
    info.set_defaults(func=_info)

    rm = cmds.add_parser("rm", help="delete stored images (catalog rows and blobs)")
    rm.add_argument("image_ids", nargs="+", metavar="ID", help="the ids to delete")
    rm.add_argument("--json", action="store_true",
                    help="as JSON: a list of {image_id, freed_bytes} of the images deleted")
    rm.add_argument("-q", "--quiet", action="store_true", help="print the deleted ids only")
    rm.set_defaults(func=_rm)

    verify = cmds.add_parser("verify", help="check every blob against its checksum",
                             description="Read every blob back and check its SHA-256; exit 7 "
                             "when any is missing or damaged.")
    verify.add_argument("--json", action="store_true",
                        help="as JSON: images, blobs, bytes, problems, unreferenced_blobs")
    verify.set_defaults(func=_verify)

    backup = cmds.add_parser("backup", help="a consistent copy of the store, while it serves",
                             description="Copy the catalog and the blobs to DEST, a new or "
                             "empty folder on the server's host; `medcompute serve --data-dir "
                             "DEST` serves the same images.")
    backup.add_argument("destination", metavar="DEST",
                        help="a new, empty folder on the server's host (absolute path)")
    backup.add_argument("--json", action="store_true",
                        help="as JSON: destination, images, blobs, bytes")
    backup.set_defaults(func=_backup)

    purge = cmds.add_parser("purge", help="delete images whose retention period has passed")
    purge.add_argument("--dry-run", action="store_true", help="report only")
    purge.add_argument("--json", action="store_true",
                       help="as JSON: image_ids, freed_bytes, blobs_removed")
    purge.add_argument("-q", "--quiet", action="store_true",
                       help="print the ids of the images (to be) deleted only")
    purge.set_defaults(func=_purge)

    for p in (put, find, get, info, rm, verify, backup, purge):
        client_options(p)
    return cmds
