"""``medcompute store status``: the reading status of a stored image's study.

    medcompute store status ID            (show it, and the versions it may serve)
    medcompute store status ID read       (change it; audited)
"""

from __future__ import annotations

from medcompute.client.channel import connection
from medcompute.client.output import print_json

__all__ = ["add_commands"]


def _status(args) -> int:
    from medcompute.client.store import StoreClient

    with StoreClient(args.server, timeout=args.timeout, **connection(args)) as store:
        r = (store.set_status(args.image_id, args.status) if args.status
             else store.status(args.image_id))
        if args.json:
            print_json(r)
        elif args.status:
            print(f"study of {args.image_id}: {r['previous_status']} -> {r['status']}; serves "
                  f"{', '.join(r['allowed_versions'])}")
        else:
            print(f"study of {args.image_id}: {r['status']}; serves "
                  f"{', '.join(r['allowed_versions'])} (statuses: {', '.join(r['statuses'])})")
    return 0


def add_commands(cmds, client_options) -> None:
    """Add ``status`` to the ``medcompute store`` sub-commands."""
    status = cmds.add_parser("status", help="show or change the reading status of a study",
                             description="The reading status of the study of image ID (unread "
                             "until changed); with STATUS, change it (audited). The server's "
                             "--status-rule says which versions each status serves.")
    status.add_argument("image_id", metavar="ID", help="an image of the study")
    status.add_argument("status", nargs="?", metavar="STATUS",
                        help="the new reading status; without it, the current one is shown")
    status.add_argument("--json", action="store_true",
                        help="as JSON: status, previous_status (after a change) or changed_at, "
                        "changed_by and statuses, and allowed_versions")
    status.set_defaults(func=_status)
    client_options(status)
