"""``medcompute keys`` and ``medcompute audit``: API keys and the audit log.

On the server's machine they work on the data directory itself (``--data-dir``,
which is how the first admin key is made); elsewhere, through the Admin service of
a running server (``--server`` with an admin key).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sys

from medcompute.client.channel import connection
from medcompute.client.cli.common import server_side

__all__ = ["add_commands"]


def _when(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"expected a date or time like 2026-11-23 or 2026-11-23T08:00, "
                         f"got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _iso(ts: float) -> str:
    if not ts:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")


def _key_row(k) -> dict:
    """A key as a row, from the key store's KeyInfo or the Admin API's message alike."""
    return {"key_id": k.key_id, "subscriber": k.subscriber, "roles": ",".join(k.roles),
            "created": _iso(k.created_at), "revoked": _iso(k.revoked_at or 0),
            "certificate_sha256": k.certificate_sha256}


class _Local:
    def __init__(self, data_dir: str):
        server = server_side()
        self.keys = server.key_store(data_dir)
        self.audit = server.audit_log(data_dir)

    def create(self, subscriber, roles, cert):
        info, token = self.keys.create(subscriber, roles, cert)
        return _key_row(info), token

    def list(self, subscriber):
        return [_key_row(k) for k in self.keys.list(subscriber)]

    def revoke(self, key_id):
        return _key_row(self.keys.revoke(key_id))

    def audit_page(self, **kw):
        entries = self.audit.list(**kw)
        return [e.__dict__ for e in entries]


class _Remote:
    def __init__(self, args):
        from medcompute.client import Client

        self.client = Client(args.server, timeout=args.timeout, **connection(args))

    def create(self, subscriber, roles, cert):
        reply = self.client.create_key(subscriber, roles, certificate_sha256=cert)
        return _key_row(reply.key), reply.api_key

    def list(self, subscriber):
        return [_key_row(k) for k in self.client.list_keys(subscriber)]

    def revoke(self, key_id):
        return _key_row(self.client.revoke_key(key_id))

    def audit_page(self, **kw):
        return [{f: getattr(e, f) for f in ("seq", "at", "subscriber", "action", "object_id",
                                            "outcome", "detail")}
                for e in self.client.audit(**kw)]


def _backend(args):
    return _Remote(args) if args.server else _Local(args.data_dir)


def _keys(args) -> int:
    backend = _backend(args)
    if args.keys_command == "create":
        row, token = backend.create(args.subscriber, args.roles, args.cert_sha256 or "")
        if args.json:
            print(json.dumps({"key": row, "api_key": token}, indent=2))
            return 0
        if not args.quiet:
            print(f"created key {row['key_id']} for {row['subscriber']} ({row['roles']}); "
                  "it is shown only now:", file=sys.stderr)
        print(token)
    elif args.keys_command == "list":
        rows = backend.list(args.subscriber or "")
        if args.json:
            print(json.dumps(rows, indent=2))
        for r in [] if args.json else rows:
            if args.quiet:
                print(r["key_id"])
                continue
            state = f"revoked {r['revoked']}" if r["revoked"] else "valid"
            print(f"{r['key_id']}  {r['subscriber']:<20} {r['roles']:<28} {r['created']}  {state}")
    else:
        row = backend.revoke(args.key_id)
        if args.json:
            print(json.dumps(row, indent=2))
        elif args.quiet:
            print(row["key_id"])
        else:
            print(f"revoked key {row['key_id']} of {row['subscriber']} at {row['revoked']}")
    return 0


def _audit(args) -> int:
    backend = _backend(args)
    rows, after = [], 0
    while True:
        page = backend.audit_page(since=_when(args.since), until=_when(args.until),
                                  subscriber=args.subscriber or "", action=args.action or "",
                                  after_seq=after, limit=1000)
        rows.extend(page)
        if len(page) < 1000 or (args.limit and len(rows) >= args.limit):
            break
        after = page[-1]["seq"]
    if args.limit:
        rows = rows[:args.limit]
    for r in rows:
        r["at"] = _iso(r["at"])
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        if args.format == "json" or args.json:
            json.dump(rows, out, indent=2)
            out.write("\n")
        elif args.format == "csv":
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=["seq", "at", "subscriber", "action",
                                                        "object_id", "outcome", "detail"])
            writer.writeheader()
            writer.writerows(rows)
            out.write(buffer.getvalue())
        else:
            for r in rows:
                out.write(f"{r['seq']:>6} {r['at']} {r['subscriber'] or '-':<16} "
                          f"{r['action']:<18} {r['object_id'] or '-':<34} {r['outcome']}"
                          f"{'  ' + r['detail'] if r['detail'] else ''}\n")
    finally:
        if args.output:
            out.close()
    return 0


def add_commands(sub, connection_options) -> None:
    """Add ``keys`` and ``audit`` to the ``medcompute`` parser."""
    DEFAULT_DATA_DIR = server_side().DEFAULT_DATA_DIR

    def where(p):
        p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                       help=f"work on this data directory directly (default {DEFAULT_DATA_DIR})")
        connection_options(p, server_default=None,
                           server_help="use this running server's Admin service instead "
                           "(needs an admin key)")

    keys = sub.add_parser("keys", help="create, list and revoke API keys",
                          description="API keys of subscribers. A key is printed once, when "
                          "it is created; the server stores only its hash.")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create a key and print it")
    create.add_argument("--subscriber", required=True, help="the subscriber's name")
    create.add_argument("--roles", required=True,
                        help="comma-separated: process, store, receive, admin")
    create.add_argument("--cert-sha256", metavar="HEX",
                        help="bind the key to the client certificate with this SHA-256 "
                        "(mTLS): it is refused over any other connection")
    create.add_argument("--json", action="store_true",
                        help="as JSON: {key: {key_id, subscriber, roles, created, revoked, "
                        "certificate_sha256}, api_key}")
    create.add_argument("-q", "--quiet", action="store_true",
                        help="print the API key only (no note on stderr)")
    where(create)
    listing = keys_sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--subscriber", help="only this subscriber's")
    listing.add_argument("--json", action="store_true",
                         help="as JSON: a list of {key_id, subscriber, roles, created, "
                         "revoked, certificate_sha256}")
    listing.add_argument("-q", "--quiet", action="store_true", help="print the key ids only")
    where(listing)
    revoke = keys_sub.add_parser("revoke", help="revoke a key (at once, no restart)")
    revoke.add_argument("key_id", help="the key's id (the part after mc_)")
    revoke.add_argument("--json", action="store_true", help="the revoked key as JSON")
    revoke.add_argument("-q", "--quiet", action="store_true", help="print its id only")
    where(revoke)
    keys.set_defaults(func=_keys)

    audit = sub.add_parser("audit", help="list or export the audit log",
                           description="Every call that touched an image, a job, a key or "
                           "usage: time, subscriber, action, object id, outcome.")
    audit.add_argument("--since", help="from this date/time (ISO 8601, UTC unless given)")
    audit.add_argument("--until", help="before this date/time")
    audit.add_argument("--subscriber", help="only this subscriber's calls")
    audit.add_argument("--action", help="only this action, e.g. process")
    audit.add_argument("--limit", type=int, default=0, help="at most this many entries")
    audit.add_argument("--format", choices=["table", "csv", "json"], default="table",
                       help="how the entries are written (default: a table)")
    audit.add_argument("--json", action="store_true",
                       help="the same as --format json: a list of {seq, at, subscriber, "
                       "action, object_id, outcome, detail}")
    audit.add_argument("-o", "--output", help="write to this file instead of stdout")
    where(audit)
    audit.set_defaults(func=_audit)
