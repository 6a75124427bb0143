"""``medcompute store usage`` and ``medcompute store capacity``: allocated and used storage.

    medcompute store usage [--subscriber NAME | --all] [--json]
    medcompute store capacity SUBSCRIBER SIZE|unlimited [--json]   (admin role)

SIZE is bytes or a number with a unit: 500MB, 20GB, 1.5TB (decimal), 8GiB (binary).
"""

from __future__ import annotations

import argparse
import json
import re

from medcompute.client.channel import connection

__all__ = ["add_commands", "parse_size"]

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int | None:
    """Bytes of ``500MB``, ``8GiB``, ``1024``; None for ``unlimited``."""
    if text.strip().lower() in ("unlimited", "none"):
        return None
    m = _SIZE.match(text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 500MB, 20GB, 8GiB or unlimited, got {text!r}")
    return int(float(m.group(1)) * _UNITS[unit])


def _bytes(n: int | None) -> str:
    if n is None:
        return "unlimited"
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _print(rows: list[dict]) -> None:
    for r in rows:
        tiers = ", ".join(f"{t} {_bytes(n)}" for t, n in sorted(r["tiers"].items())) or "nothing"
        share = (f" ({100 * r['used_bytes'] / r['allocated_bytes']:.1f}%)"
                 if r["allocated_bytes"] else "")
        print(f"{r['subscriber']}: allocated {_bytes(r['allocated_bytes'])}, used "
              f"{_bytes(r['used_bytes'])}{share}: {tiers}")


def _usage(args) -> int:
    from medcompute.client.store import StoreClient

    with StoreClient(args.server, timeout=args.timeout, **connection(args)) as store:
        rows = store.usage(args.subscriber or "", all_subscribers=args.all)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print(rows)
    return 0


def _capacity(args) -> int:
    from medcompute.client.store import StoreClient

    with StoreClient(args.server, timeout=args.timeout, **connection(args)) as store:
        row = store.set_capacity(args.subscriber, args.size)
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        _print([row])
    return 0


def add_commands(cmds, client_options) -> None:
    """Add ``usage`` and ``capacity`` to the ``medcompute store`` sub-commands."""
    usage = cmds.add_parser("usage", help="allocated and used storage, per tier",
                            description="Allocated capacity and used bytes (every blob of "
                            "every image kept, versions included), per storage tier.")
    who = usage.add_mutually_exclusive_group()
    who.add_argument("--subscriber", help="another subscriber's (admin role)")
    who.add_argument("--all", action="store_true", help="every subscriber's (admin role)")
    usage.add_argument("--json", action="store_true", help="as JSON")
    usage.set_defaults(func=_usage)
    cap = cmds.add_parser("capacity", help="allocate a subscriber's storage capacity (admin)",
                          description="Allocate SUBSCRIBER a storage capacity: registrations, "
                          "kept results and versions beyond it are refused with "
                          "RESOURCE_EXHAUSTED. SIZE: 500MB, 20GB, 8GiB, or unlimited.")
    cap.add_argument("subscriber", metavar="SUBSCRIBER",
                     help="the subscriber whose capacity is set")
    cap.add_argument("size", type=parse_size, metavar="SIZE",
                     help="the capacity: 500MB, 20GB, 8GiB, or unlimited")
    cap.add_argument("--json", action="store_true",
                     help="the subscriber's storage after the change, as `store usage --json` "
                     "prints it")
    cap.set_defaults(func=_capacity)
    for p in (usage, cap):
        client_options(p)
