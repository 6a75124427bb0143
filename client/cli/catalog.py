"""``medcompute catalog migrate|copy``: the catalog itself, on the server's machine.

    medcompute catalog migrate [--catalog postgresql://...|sqlite:PATH] [--data-dir DIR]
    medcompute catalog copy --from sqlite:PATH --to postgresql://... [--json]

``migrate`` brings a catalog to the current version of every table (a server does so
when it starts, too) and prints each table module's version; ``copy`` moves an existing
catalog into a new, empty one (e.g. from one host's SQLite file to the PostgreSQL that
several hosts share) and verifies it row for row.
"""

from __future__ import annotations

import json
import sys

from medcompute.client import exits
from medcompute.client.cli.common import server_side

__all__ = ["add_commands"]


def _errors(name: str, fn):
    """Run ``fn``; a catalog spec's mistake or the server side's refusal as a message and
    an exit status instead of a traceback."""
    import grpc

    MedcomputeError = server_side().MedcomputeError
    try:
        return fn(), 0
    except ValueError as exc:
        print(f"medcompute catalog {name}: {exc}", file=sys.stderr)
        return None, exits.USAGE
    except MedcomputeError as exc:
        print(f"medcompute catalog {name}: {exc.code_name}: {exc.details}", file=sys.stderr)
        return None, exits.for_status(getattr(grpc.StatusCode, exc.code_name))


def _migrate(args) -> int:
    versions, status = _errors("migrate", lambda: server_side().catalog_migrate(
        args.catalog or None, args.data_dir))
    if status:
        return status
    if args.json:
        print(json.dumps({"versions": versions}, indent=2, sort_keys=True))
    else:
        for name, version in sorted(versions.items()):
            print(f"{name}\t{version}")
    return 0


def _copy(args) -> int:
    report, status = _errors("copy", lambda: server_side().catalog_copy(args.source,
                                                                        args.target))
    if status:
        return status
    if args.json:
        print(json.dumps({"rows": report.rows, "total": report.total, "verified": True},
                         indent=2, sort_keys=True))
    else:
        for table, n in sorted(report.rows.items()):
            print(f"{table}\t{n}")
        print(f"copied and verified row for row: {report.total} rows in "
              f"{len(report.rows)} tables", file=sys.stderr)
    return 0


def add_commands(sub, connection_options) -> None:
    """Add ``catalog`` to the ``medcompute`` parser."""
    DEFAULT_DATA_DIR = server_side().DEFAULT_DATA_DIR
    catalog = sub.add_parser("catalog", help="migrate or copy the server's catalog",
                             description="The catalog of jobs, images, keys and usage, on the "
                             "server's machine: SQLite in the data directory, or PostgreSQL.")
    actions = catalog.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    migrate = actions.add_parser("migrate", help="bring a catalog to the current version")
    migrate.add_argument("--catalog", default="", metavar="URL",
                         help="postgresql://USER@HOST/DB or sqlite:PATH (default: the SQLite "
                         "file in --data-dir)")
    migrate.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                         help=f"the data directory (default {DEFAULT_DATA_DIR})")
    migrate.add_argument("--json", action="store_true", help="as JSON: {versions: {name: N}}")
    migrate.set_defaults(func=_migrate)
    copy = actions.add_parser("copy", help="copy a catalog into a new, empty one and verify "
                              "it row for row")
    copy.add_argument("--from", dest="source", required=True, metavar="URL",
                      help="the catalog to copy: sqlite:PATH (the data directory's "
                      "catalog.sqlite3) or postgresql://...")
    copy.add_argument("--to", dest="target", required=True, metavar="URL",
                      help="the new, empty catalog: postgresql://... or sqlite:PATH")
    copy.add_argument("--json", action="store_true",
                      help="as JSON: {rows: {table: N}, total, verified}")
    copy.set_defaults(func=_copy)
