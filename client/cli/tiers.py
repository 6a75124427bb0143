"""``medcompute store tier`` and ``medcompute store tier-policy``: moves between tiers.

    medcompute store tier ID hot|cold          (move one of your images)
    medcompute store tier-policy [--dry-run]   (apply the server's policy now; admin role)
"""

from __future__ import annotations

from medcompute.client.channel import connection
from medcompute.client.output import print_json

__all__ = ["add_commands"]


def _tier(args) -> int:
    from medcompute.client.store import StoreClient

    with StoreClient(args.server, timeout=args.timeout, **connection(args)) as store:
        r = store.move(args.image_id, args.tier)
    if args.json:
        print_json(r)
        return 0
    print(f"{args.image_id}: {r['blobs_moved']} blob(s), {r['bytes_moved']} bytes moved; its "
          f"original files are {r['tier']}")
    return 0


def _policy(args) -> int:
    from medcompute.client.store import StoreClient

    with StoreClient(args.server, timeout=args.timeout, **connection(args)) as store:
        r = store.apply_tier_policy(dry_run=args.dry_run)
    if args.json:
        print_json(r)
        return 0
    verb = "would move" if args.dry_run else "moved"
    print(f"{verb} {r['blobs']} blob(s) of {len(r['image_ids'])} image(s), {r['bytes']} bytes, "
          "to cold")
    for image_id in r["image_ids"]:
        print(f"  {image_id}")
    return 0


def add_commands(cmds, client_options) -> None:
    """Add ``tier`` and ``tier-policy`` to the ``medcompute store`` sub-commands."""
    tier = cmds.add_parser("tier", help="move an image to the hot or the cold tier",
                           description="Move an image's originals and lossless versions to "
                           "cold, or every blob of it back to hot (copy, sync, verify, switch, "
                           "delete: crash-safe). Needs a server started with --cold-dir.")
    tier.add_argument("image_id", metavar="ID", help="the image to move")
    tier.add_argument("tier", choices=["hot", "cold"], help="where its files go")
    tier.add_argument("--json", action="store_true",
                      help="as JSON: blobs_moved, bytes_moved, tier")
    tier.set_defaults(func=_tier)
    policy = cmds.add_parser("tier-policy", help="apply the tier policy now (admin)",
                             description="Move to cold what serve --cold-after/--cold-status "
                             "say, now, instead of at the next hourly upkeep round.")
    policy.add_argument("--dry-run", action="store_true", help="report only")
    policy.add_argument("--json", action="store_true",
                        help="as JSON: image_ids, blobs, bytes")
    policy.set_defaults(func=_policy)
    for p in (tier, policy):
        client_options(p)
