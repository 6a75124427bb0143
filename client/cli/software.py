"""``medcompute software``: the registry of processing packages.

    medcompute software add WHEEL --vendor V --licence L [--fee F]   (publisher role)
    medcompute software list [NAME] | info NAME[==VERSION]
    medcompute software approve|retire NAME==VERSION                 (admin role)
    medcompute software grant NAME SUBSCRIBER                        (the publisher)
    medcompute software get NAME==VERSION -o DIR                     (granted subscribers)
    medcompute software uses                                         (the publisher)
"""

from __future__ import annotations

import sys

from medcompute.client.channel import connection
from medcompute.client.output import message_json, print_json

__all__ = ["add_commands"]


def _client(args):
    from medcompute.client.software import SoftwareClient

    return SoftwareClient(args.server, timeout=args.timeout, **connection(args))


def _spec(text: str, *, version: bool) -> tuple[str, str]:
    from medcompute.client.software import split_spec

    name, ver = split_spec(text)
    if version and not ver:
        raise ValueError(f"expected NAME==VERSION, got {text!r}")
    return name, ver


def _show(args, info) -> None:
    if args.json:
        print_json(message_json(info))
        return
    print(f"{info.name}=={info.version}  {info.status}  {info.vendor}, {info.licence}, fee "
          f"{info.fee_per_use:g} per use, by {info.publisher}, sha256 {info.sha256}")
    for op in info.operations:
        print(f"    {op.name}: {op.summary}")
        for p in op.parameters:
            unit = f" {p.unit}" if p.unit else ""
            print(f"        {p.name:<14} default {p.default:g}{unit}: {p.description}")


def _run(fn):
    def run(args) -> int:
        try:
            return fn(args)
        except (ValueError, OSError) as exc:
            print(f"medcompute software: {exc}", file=sys.stderr)
            return 2
    return run


@_run
def _add(args) -> int:
    with _client(args) as sw:
        _show(args, sw.add(args.wheel, vendor=args.vendor, licence=args.licence,
                           fee_per_use=args.fee))
    return 0


@_run
def _list(args) -> int:
    with _client(args) as sw:
        rows = sw.list(args.name)
    if args.json:
        print_json([message_json(r) for r in rows])
        return 0
    for r in rows:
        print(f"{r.name}=={r.version}  {r.status:<8} {len(r.operations)} operation(s)  "
              f"fee {r.fee_per_use:g}  {r.vendor}")
    return 0


@_run
def _info(args) -> int:
    name, version = _spec(args.package, version=False)
    with _client(args) as sw:
        _show(args, sw.info(name, version))
    return 0


def _decide(verb: str):
    @_run
    def decide(args) -> int:
        name, version = _spec(args.package, version=True)
        with _client(args) as sw:
            _show(args, getattr(sw, verb)(name, version))
        return 0
    return decide


@_run
def _grant(args) -> int:
    with _client(args) as sw:
        sw.grant(args.name, args.subscriber)
    if args.json:
        print_json({"name": args.name, "subscriber": args.subscriber})
        return 0
    print(f"{args.name} granted to {args.subscriber}")
    return 0


@_run
def _get(args) -> int:
    name, version = _spec(args.package, version=True)
    with _client(args) as sw:
        path = sw.download(name, version, args.output)
    if args.json:
        print_json({"name": name, "version": version, "path": str(path)})
        return 0
    print(path)
    return 0


@_run
def _uses(args) -> int:
    with _client(args) as sw:
        rows = sw.uses()
    if args.json:
        print_json([message_json(r) for r in rows])
        return 0
    for r in rows:
        print(f"{r.name}=={r.version}  {r.uses} use(s), {r.downloads} download(s), fees "
              f"{r.fees:g}")
    return 0


def add_commands(sub, client_options) -> None:
    sw = sub.add_parser("software", help="processing packages: register, approve, deliver")
    cmds = sw.add_subparsers(dest="software_command", required=True, metavar="COMMAND")
    add = cmds.add_parser("add", help="register a wheel (publisher role)")
    add.add_argument("wheel", help="the wheel file (declares entry points in the group "
                     "medcompute.operations)")
    add.add_argument("--vendor", required=True, help="who makes the package")
    add.add_argument("--licence", default="", help="default: the wheel's License metadata")
    add.add_argument("--fee", type=float, default=0.0, help="fee per use (default 0)")
    lst = cmds.add_parser("list", help="the packages you may see")
    lst.add_argument("name", nargs="?", default="", help="one package's versions only")
    info = cmds.add_parser("info", help="one package version and its operations")
    info.add_argument("package", metavar="NAME[==VERSION]",
                      help="the package (its newest version without ==VERSION)")
    approve = cmds.add_parser("approve", help="approve a version (admin role)")
    approve.add_argument("package", metavar="NAME==VERSION", help="the version to approve")
    retire = cmds.add_parser("retire", help="retire a version (admin role)")
    retire.add_argument("package", metavar="NAME==VERSION", help="the version to retire")
    grant = cmds.add_parser("grant", help="entitle a subscriber to download a package")
    grant.add_argument("name", help="your package's name")
    grant.add_argument("subscriber", help="the subscriber that may download it")
    get = cmds.add_parser("get", help="download an approved version's wheel, verified by "
                          "its SHA-256")
    get.add_argument("package", metavar="NAME==VERSION", help="the version to download")
    get.add_argument("-o", "--output", required=True, metavar="DIR",
                     help="the folder the wheel is written into")
    uses = cmds.add_parser("uses", help="uses and downloads of your packages (counts)")
    for parser, func in ((add, _add), (lst, _list), (info, _info),
                         (approve, _decide("approve")), (retire, _decide("retire")),
                         (grant, _grant), (get, _get), (uses, _uses)):
        parser.add_argument("--json", action="store_true", help="as JSON")
        client_options(parser)
        parser.set_defaults(func=func)
