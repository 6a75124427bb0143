"""``medcompute dicom``: the service as a DICOM node.

    medcompute dicom ae add AET --subscriber S --host IP --data-dir DIR
    medcompute dicom ae list [--subscriber S] --data-dir DIR
    medcompute dicom ae rm AET --data-dir DIR

A calling AE title (a scanner, a PACS) is registered for the subscriber its images
belong to and the host it calls from; associations from any other AE title or host are
rejected. These commands work on the data directory on the server's machine (as the
first admin key is made); a running server sees a change at its next association.
"""

from __future__ import annotations

import json
import sys

__all__ = ["add_commands"]


def _registry(args):
    from medcompute.server.dicomnet.registry import NodeRegistry

    return NodeRegistry(args.data_dir)


def _fail(exc) -> int:
    print(f"medcompute dicom: {exc.details}", file=sys.stderr)
    return 2


def _ae_add(args) -> int:
    from medcompute.server.errors import MedcomputeError

    registry = _registry(args)
    try:
        ae = registry.add_ae_now(args.ae_title, args.subscriber, args.host)
    except MedcomputeError as exc:
        return _fail(exc)
    finally:
        registry.close()
    print(f"{ae.ae_title} -> {ae.subscriber} (from {ae.host})")
    return 0


def _ae_list(args) -> int:
    registry = _registry(args)
    try:
        aes = registry.list_aes_now(args.subscriber or "")
    finally:
        registry.close()
    if args.json:
        print(json.dumps([ae.__dict__ for ae in aes], indent=2))
        return 0
    for ae in aes:
        print(f"{ae.ae_title:<16}  {ae.subscriber:<20}  {ae.host}")
    return 0


def _ae_rm(args) -> int:
    from medcompute.server.errors import MedcomputeError

    registry = _registry(args)
    try:
        registry.remove_ae_now(args.ae_title)
    except MedcomputeError as exc:
        return _fail(exc)
    finally:
        registry.close()
    return 0


def add_commands(sub) -> None:
    from medcompute.server.config import DEFAULT_DATA_DIR

    dicom = sub.add_parser("dicom", help="the service as a DICOM node: calling AE titles",
                           description="Register the AE titles (scanners, PACS) that may send "
                           "to `medcompute serve --dicom-port`.")
    dsub = dicom.add_subparsers(dest="dicom_command", required=True, metavar="WHAT")
    ae = dsub.add_parser("ae", help="calling AE titles: add, list, rm")
    asub = ae.add_subparsers(dest="ae_command", required=True, metavar="ACTION")

    def data_dir(p):
        p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                       help=f"the server's data directory (default {DEFAULT_DATA_DIR})")

    add = asub.add_parser("add", help="register a calling AE title for a subscriber and host")
    add.add_argument("ae_title", metavar="AET")
    add.add_argument("--subscriber", required=True,
                     help="the subscriber the received images belong to")
    add.add_argument("--host", required=True,
                     help="the IP address (or host name) it calls from; * for any")
    data_dir(add)
    add.set_defaults(func=_ae_add)
    lst = asub.add_parser("list", help="the registered calling AE titles")
    lst.add_argument("--subscriber", default="", help="only this subscriber's")
    lst.add_argument("--json", action="store_true", help="as JSON")
    data_dir(lst)
    lst.set_defaults(func=_ae_list)
    rm = asub.add_parser("rm", help="unregister a calling AE title")
    rm.add_argument("ae_title", metavar="AET")
    data_dir(rm)
    rm.set_defaults(func=_ae_rm)
