"""``medcompute dicom``: the service as a DICOM node.

    medcompute dicom ae add AET --subscriber S --host IP|CIDR|NAME --api-key ADMIN
                                                                         (or --data-dir DIR)
    medcompute dicom ae list [--subscriber S] --api-key ADMIN            (or --data-dir DIR)
    medcompute dicom ae rm AET --api-key ADMIN                           (or --data-dir DIR)
    medcompute dicom rule add --subscriber S --op NAME[:k=v,...] [--op ...] [--calling-ae AET]
                    [--called-ae AET] [--modality CT] [--series-description TEXT[*]]
                    [--tag KEYWORD=VALUE[*]] [--output series|file] [--to SUBSCRIBER]
                    [--label TEXT] --api-key ADMIN
    medcompute dicom rule list [--subscriber S] --api-key ADMIN
    medcompute dicom rule rm RULE --api-key ADMIN
    medcompute dicom series --api-key KEY          (the caller's received series, their jobs)
    medcompute dicom node add NAME --ae-title AET --host HOST --port N [--dicom-tls
                    [--dicom-tls-ca PEM] [--dicom-tls-cert PEM --dicom-tls-key PEM]
                    [--dicom-tls-server-name NAME]] --api-key RECEIVER
    medcompute dicom node list|rm ... --api-key RECEIVER
    medcompute dicom pushes [--job JOB] --api-key KEY   (pushes sent or received, their state)
    medcompute dicom source add NAME --ae-title AET --host HOST --port N [--method move|get]
                    [--every DURATION [--days N] [--schedule-modality M]]
                    [--dicom-tls ...] [--capacity-url URL --offload-below N%|NMiB
                    [--capacity-max-mib N]]
    medcompute dicom source list|rm ... --api-key KEY
    medcompute collect SOURCE [--modality M] [--date-from D] [--date-to D] [--study-uid UID]
                       [--patient-id ID] [--method move|get] --api-key KEY

A calling AE title (a scanner, a PACS) is registered, by an administrator only, for the
subscriber its images belong to and the host or network it calls from (never any host);
associations from any other AE title or host are rejected. A source opens no door: the
server accepts its association only to answer a C-MOVE the server itself sent it. The
`ae` commands go through the server's DicomService with an admin key, or,
with --data-dir, work on the data directory on the server's machine (before any key
exists, as the first admin key is made); a running server sees a change at its next
association. Everything else goes through the server's DicomService.
"""

from __future__ import annotations

import sys

from medcompute.client import exits
from medcompute.client.cli.common import open_client, parse_duration, server_side
from medcompute.client.output import message_json, print_json

__all__ = ["add_commands"]


def _registry(args):
    return server_side().node_registry(args.data_dir)


def _fail(exc) -> int:
    """A local registry's refusal: its message, and the exit status of the table."""
    import grpc

    print(f"medcompute dicom: {exc.details}", file=sys.stderr)
    if exc.code_name == "INVALID_ARGUMENT":    # a local command: the arguments were wrong
        return exits.USAGE
    return exits.for_status(grpc.StatusCode[exc.code_name])


def _ae_dict(ae) -> dict:
    return {"ae_title": ae.ae_title, "subscriber": ae.subscriber, "host": ae.host,
            "created_at": ae.created_at}


def _ae_add(args) -> int:
    if args.data_dir:
        registry = _registry(args)
        try:
            ae = registry.add_ae_now(args.ae_title, args.subscriber, args.host)
        except server_side().MedcomputeError as exc:
            return _fail(exc)
        finally:
            registry.close()
    else:
        with open_client(args) as client:
            ae = client.dicom.register_calling_ae(args.ae_title, args.subscriber, args.host)
    if args.json:
        print_json(_ae_dict(ae))
    else:
        print(f"{ae.ae_title} -> {ae.subscriber} (from {ae.host})")
    return 0


def _ae_list(args) -> int:
    if args.data_dir:
        registry = _registry(args)
        try:
            aes = registry.list_aes_now(args.subscriber or "")
        finally:
            registry.close()
    else:
        with open_client(args) as client:
            aes = client.dicom.calling_aes(args.subscriber or "")
    if args.json:
        print_json([_ae_dict(ae) for ae in aes])
        return 0
    for ae in aes:
        print(f"{ae.ae_title:<16}  {ae.subscriber:<20}  {ae.host}")
    return 0


def _ae_rm(args) -> int:
    if args.data_dir:
        registry = _registry(args)
        try:
            registry.remove_ae_now(args.ae_title)
        except server_side().MedcomputeError as exc:
            return _fail(exc)
        finally:
            registry.close()
    else:
        with open_client(args) as client:
            client.dicom.delete_calling_ae(args.ae_title)
    if args.json:
        print_json({"ae_title": args.ae_title, "removed": True})
    return 0


def _rule_add(args) -> int:

    tags = {}
    for item in args.tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"medcompute dicom rule add: --tag: expected KEYWORD=VALUE, got {item!r}",
                  file=sys.stderr)
            return 2
        tags[key] = value
    try:
        with open_client(args) as client:
            rule = client.dicom.create_rule(
                args.subscriber, args.op, calling_ae=args.calling_ae, called_ae=args.called_ae,
                modality=args.modality, series_description=args.series_description, tags=tags,
                output=args.output, device=args.device, destination=args.to, label=args.label,
                dicom_nodes=args.push)
    except ValueError as exc:
        print(f"medcompute dicom rule add: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print_json(message_json(rule))
    else:
        print(rule.rule_id)
    return 0


def _rule_list(args) -> int:

    with open_client(args) as client:
        rules = client.dicom.rules(args.subscriber)
    if args.json:
        print_json([message_json(r) for r in rules])
        return 0
    for r in rules:
        match = " ".join(f"{k}={v}" for k, v in (
            ("calling", r.calling_ae), ("called", r.called_ae), ("modality", r.modality),
            ("description", r.series_description), *sorted(r.tags.items())) if v) or "any"
        ops = ",".join(op.WhichOneof("op") or "?" for op in r.process.pipeline)
        print(f"{r.rule_id}  {r.subscriber:<16}  {match}  -> {ops}"
              f"{'  to ' + r.destination if r.destination else ''}")
    return 0


def _remover(method: str, key: str, what: str):
    """The ``rm`` command that calls ``client.dicom.<method>(args.<key>)`` and says what it
    removed (with --json, ``{key: ..., "removed": true}``)."""
    def rm(args) -> int:
        with open_client(args) as client:
            getattr(client.dicom, method)(getattr(args, key))
        if args.json:
            print_json({key: getattr(args, key), "removed": True})
        else:
            print(f"removed {what} {getattr(args, key)}")
        return 0
    return rm


_rule_rm = _remover("delete_rule", "rule_id", "routing rule")


def _series(args) -> int:
    from medcompute.proto.v1 import dicom_pb2

    with open_client(args) as client:
        series = client.dicom.received_series()
    if args.json:
        print_json([message_json(s) for s in series])
        return 0
    for s in series:
        state = dicom_pb2.SeriesState.Name(s.state).removeprefix("SERIES_STATE_").lower()
        jobs = ",".join(j.job_id for j in s.jobs if j.job_id) or "-"
        print(f"{s.calling_ae:<16}  {state:<9}  {s.instances:>5} instance(s)  image "
              f"{s.image_id or '-'}  jobs {jobs}{'  ' + s.reason if s.reason else ''}")
    return 0


class _Usage(Exception):
    """A local file named by an option cannot be read (exit 2)."""


def _read_pem(path: str | None, option: str) -> str:
    if not path:
        return ""
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise _Usage(f"{option}: cannot read {path}: "
                     f"{getattr(exc, 'strerror', None) or exc}") from None


def _tls(args):
    """The DicomTls of --dicom-tls and its files (read here: the server reads no file a
    caller names); None without TLS."""
    from medcompute.client.dicom import tls

    given = (args.dicom_tls_ca, args.dicom_tls_cert, args.dicom_tls_key,
             args.dicom_tls_server_name)
    if not args.dicom_tls and not any(given):
        return None
    return tls(ca_pem=_read_pem(args.dicom_tls_ca, "--dicom-tls-ca"),
               client_cert_pem=_read_pem(args.dicom_tls_cert, "--dicom-tls-cert"),
               client_key_pem=_read_pem(args.dicom_tls_key, "--dicom-tls-key"),
               server_name=args.dicom_tls_server_name or "")


def _peer(n) -> str:
    return f"{n.ae_title}@{n.host}:{n.port}{' (TLS)' if n.HasField('tls') else ''}"


def _node_add(args) -> int:

    try:
        tls = _tls(args)
    except _Usage as exc:
        print(f"medcompute dicom node add: {exc}", file=sys.stderr)
        return exits.USAGE
    with open_client(args) as client:
        n = client.dicom.register_node(args.name, args.ae_title, args.host, args.port, tls=tls)
    if args.json:
        print_json(message_json(n))
    else:
        print(f"{n.name}: {_peer(n)}")
    return 0


def _node_list(args) -> int:

    with open_client(args) as client:
        nodes = client.dicom.nodes()
    if args.json:
        print_json([message_json(n) for n in nodes])
        return 0
    for n in nodes:
        print(f"{n.name:<20}  {n.ae_title:<16}  {n.host}:{n.port}"
              f"{'  TLS' if n.HasField('tls') else ''}")
    return 0


_node_rm = _remover("delete_node", "name", "DICOM node")


def _pushes(args) -> int:
    from medcompute.proto.v1 import dicom_pb2

    with open_client(args) as client:
        pushes = client.dicom.pushes(args.job)
    if args.json:
        print_json([message_json(p) for p in pushes])
        return 0
    for p in pushes:
        state = dicom_pb2.PushState.Name(p.state).removeprefix("PUSH_STATE_").lower()
        print(f"{p.job_id}  {p.sender} -> {p.recipient}/{p.node}  {state}  tries "
              f"{p.attempts}  instances {p.instances_delivered}"
              f"{'  ' + p.proof.split('; ', 1)[-1] if p.proof else ''}"
              f"{'  ' + p.reason if p.reason else ''}")
    return 0


def _threshold(text: str | None) -> tuple[float, int]:
    """--offload-below: (percent, MiB) from "20%" or "500MiB" (or "500MB", "500")."""
    if not text:
        return 0.0, 0
    value = text.strip()
    try:
        if value.endswith("%"):
            return float(value[:-1]), 0
        for unit in ("MiB", "MB", "M"):
            if value.endswith(unit):
                value = value[: -len(unit)]
                break
        return 0.0, int(value)
    except ValueError:
        raise _Usage(f"--offload-below: expected a percentage (20%) or MiB (500MiB), got "
                     f"{text!r}") from None


def _source_add(args) -> int:

    try:
        tls = _tls(args)
        percent, mib = _threshold(args.offload_below)
    except _Usage as exc:
        print(f"medcompute dicom source add: {exc}", file=sys.stderr)
        return exits.USAGE
    with open_client(args) as client:
        src = client.dicom.register_source(
            args.name, args.ae_title, args.host, args.port, method=args.method,
            every_seconds=int(args.every), schedule_days=args.days,
            schedule_modality=args.schedule_modality, tls=tls,
            capacity_url=args.capacity_url, offload_below_percent=percent,
            offload_below_mib=mib, capacity_max_mib=args.capacity_max_mib)
    if args.json:
        print_json(message_json(src))
    else:
        print(f"{src.name}: {_peer(src)}")
    return 0


_source_rm = _remover("delete_source", "name", "source")


def _source_list(args) -> int:
    from medcompute.proto.v1 import dicom_pb2

    with open_client(args) as client:
        sources = client.dicom.sources()
    if args.json:
        print_json([message_json(s) for s in sources])
        return 0
    for s in sources:
        method = dicom_pb2.RetrieveMethod.Name(s.method).removeprefix("RETRIEVE_METHOD_")
        print(f"{s.name:<20}  {s.ae_title:<16}  {s.host}:{s.port}  {method.lower()}"
              f"{'  TLS' if s.HasField('tls') else ''}"
              f"{'  capacity: ' + s.capacity_state if s.capacity_state else ''}")
    return 0


def _collect(args) -> int:

    with open_client(args) as client:
        out = client.dicom.collect(args.source, modality=args.modality,
                                   date_from=args.date_from, date_to=args.date_to,
                                   study_instance_uid=args.study_uid,
                                   patient_id=args.patient_id, method=args.method)
    if args.json:
        print_json(message_json(out))
    else:
        print(f"{out.series_found} series found, {out.series_skipped} collected before, "
              f"{out.series_retrieved} retrieved ({out.instances_retrieved} instances)")
        for line in out.failures:
            print(f"failed: {line}")
    return exits.JOB_FAILED if out.failures else exits.OK


def add_commands(sub, client_options) -> None:
    DEFAULT_DATA_DIR = server_side().DEFAULT_DATA_DIR

    dicom = sub.add_parser("dicom", help="the service as a DICOM node: calling AE titles, "
                           "routing rules, received series",
                           description="Register the AE titles (scanners, PACS) that may send "
                           "to `medcompute serve --dicom-port`.")
    dsub = dicom.add_subparsers(dest="dicom_command", required=True, metavar="WHAT")
    ae = dsub.add_parser("ae", help="calling AE titles: add, list, rm")
    asub = ae.add_subparsers(dest="ae_command", required=True, metavar="ACTION")

    def data_dir(p):
        client_options(p)
        p.add_argument("--data-dir", default=None,
                       help="work on this data directory on the server's machine instead of "
                       f"through the server (e.g. {DEFAULT_DATA_DIR}, before any admin key "
                       "exists)")

    def peer_tls(p):
        g = p.add_argument_group("DICOM TLS to it (the files are read here and sent)")
        g.add_argument("--dicom-tls", action="store_true",
                       help="associate over DICOM TLS (implied by the options below)")
        g.add_argument("--dicom-tls-ca", metavar="PEM",
                       help="the CA certificates that must have signed its certificate "
                       "(default: the server machine's trusted ones)")
        g.add_argument("--dicom-tls-cert", metavar="PEM",
                       help="a client certificate to present, for a peer that requires one "
                       "(mutual TLS), with --dicom-tls-key")
        g.add_argument("--dicom-tls-key", metavar="PEM",
                       help="the unencrypted private key of --dicom-tls-cert")
        g.add_argument("--dicom-tls-server-name", metavar="NAME",
                       help="the name its certificate must carry (default: --host)")

    add = asub.add_parser("add", help="register a calling AE title for a subscriber and host")
    add.add_argument("ae_title", metavar="AET", help="the calling AE title the scanner sends")
    add.add_argument("--subscriber", required=True,
                     help="the subscriber the received images belong to")
    add.add_argument("--host", required=True,
                     help="the IP address, network (CIDR, e.g. 10.0.4.0/24) or host name "
                     "it calls from (never any host)")
    data_dir(add)
    add.add_argument("--json", action="store_true", help="the registered calling AE title as JSON")
    add.set_defaults(func=_ae_add)
    lst = asub.add_parser("list", help="the registered calling AE titles")
    lst.add_argument("--subscriber", default="", help="only this subscriber's")
    lst.add_argument("--json", action="store_true", help="as JSON")
    data_dir(lst)
    lst.set_defaults(func=_ae_list)
    rm = asub.add_parser("rm", help="unregister a calling AE title")
    rm.add_argument("ae_title", metavar="AET", help="the calling AE title to unregister")
    data_dir(rm)
    rm.add_argument("--json", action="store_true", help="as JSON: {ae_title, removed}")
    rm.set_defaults(func=_ae_rm)

    rule = dsub.add_parser("rule", help="routing rules: a received series that matches runs "
                           "as a job (admin)")
    rsub = rule.add_subparsers(dest="rule_command", required=True, metavar="ACTION")
    radd = rsub.add_parser("add", help="add a routing rule; prints its id")
    radd.add_argument("--subscriber", required=True,
                      help="whose received series it routes (the jobs run as it)")
    radd.add_argument("--op", action="append", required=True, metavar="NAME[:key=value,...]",
                      help="an operation, applied in the order given (as for process)")
    radd.add_argument("--calling-ae", default="", help="match the sender's AE title")
    radd.add_argument("--called-ae", default="", help="match the AE title it called")
    radd.add_argument("--modality", default="", help="match the modality (CT, MR, ...)")
    radd.add_argument("--series-description", default="",
                      help="match the series description (a trailing * matches a prefix)")
    radd.add_argument("--tag", action="append", default=[], metavar="KEYWORD=VALUE",
                      help="match another attribute by DICOM keyword, e.g. "
                      "BodyPartExamined=CHEST (a trailing * matches a prefix)")
    radd.add_argument("--output", choices=["series", "file"], default="series",
                      help="a derived series (default) or one DICOM file")
    radd.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                      help="where the rule's jobs run (default: auto)")
    radd.add_argument("--to", default="", metavar="SUBSCRIBER",
                      help="deliver each result to this subscriber's inbox")
    radd.add_argument("--label", default="", help="shown in job lists (no patient data)")
    radd.add_argument("--push", action="append", default=[], metavar="NODE",
                      help="push each result by C-STORE to this DICOM node of the recipient "
                      "(--to, or the subscriber itself); repeatable")
    client_options(radd)
    radd.add_argument("--json", action="store_true", help="the rule (RoutingRule) as JSON")
    radd.set_defaults(func=_rule_add)
    rlist = rsub.add_parser("list", help="the routing rules")
    rlist.add_argument("--subscriber", default="", help="only this subscriber's")
    rlist.add_argument("--json", action="store_true", help="as JSON")
    client_options(rlist)
    rlist.set_defaults(func=_rule_list)
    rrm = rsub.add_parser("rm", help="remove a routing rule")
    rrm.add_argument("rule_id", metavar="RULE", help="the id `dicom rule add` printed")
    client_options(rrm)
    rrm.add_argument("--json", action="store_true", help="as JSON: {rule_id, removed}")
    rrm.set_defaults(func=_rule_rm)
    series = dsub.add_parser("series", help="your series received over DICOM and their jobs")
    series.add_argument("--json", action="store_true", help="as JSON")
    client_options(series)
    series.set_defaults(func=_series)

    node = dsub.add_parser("node", help="your DICOM nodes: where results are pushed (receive)")
    nsub = node.add_subparsers(dest="node_command", required=True, metavar="ACTION")
    nadd = nsub.add_parser("add", help="register (or change) a DICOM node")
    nadd.add_argument("name", metavar="NAME", help="your name for it")
    nadd.add_argument("--ae-title", required=True, help="its AE title")
    nadd.add_argument("--host", required=True, help="its host name or IP address")
    nadd.add_argument("--port", type=int, required=True, help="its DICOM port")
    peer_tls(nadd)
    client_options(nadd)
    nadd.add_argument("--json", action="store_true", help="the node (DicomNode) as JSON")
    nadd.set_defaults(func=_node_add)
    nlist = nsub.add_parser("list", help="your DICOM nodes")
    client_options(nlist)
    nlist.add_argument("--json", action="store_true", help="as JSON: a list of DicomNode")
    nlist.set_defaults(func=_node_list)
    nrm = nsub.add_parser("rm", help="remove a DICOM node")
    nrm.add_argument("name", metavar="NAME", help="the node's name")
    client_options(nrm)
    nrm.add_argument("--json", action="store_true", help="as JSON: {name, removed}")
    nrm.set_defaults(func=_node_rm)
    pushes = dsub.add_parser("pushes", help="pushes of results to DICOM nodes: pending, "
                             "sending, delivered, failed (with the reason)")
    pushes.add_argument("--job", default="", help="only this job's")
    pushes.add_argument("--json", action="store_true", help="as JSON")
    client_options(pushes)
    pushes.set_defaults(func=_pushes)

    source = dsub.add_parser("source", help="your PACS to collect from: add, list, rm")
    ssub = source.add_subparsers(dest="source_command", required=True, metavar="ACTION")
    sadd = ssub.add_parser("add", help="register (or change) a source to collect from (it may "
                           "call this server only to answer a C-MOVE of ours, while it runs)")
    sadd.add_argument("name", metavar="NAME", help="your name for it")
    sadd.add_argument("--ae-title", required=True, help="its AE title")
    sadd.add_argument("--host", required=True, help="its host name or IP address")
    sadd.add_argument("--port", type=int, required=True, help="its DICOM port")
    sadd.add_argument("--method", choices=["move", "get"], default="move",
                      help="C-MOVE to this server's AE (default; the PACS must know it as a "
                      "destination) or C-GET")
    sadd.add_argument("--every", type=parse_duration, default=0, metavar="DURATION",
                      help="also collect on this schedule, e.g. 15m, 1h (default: only on "
                      "request with `medcompute collect`)")
    sadd.add_argument("--days", type=int, default=0, metavar="N",
                      help="scheduled collects: studies of the last N days (default: any)")
    sadd.add_argument("--schedule-modality", default="", metavar="MODALITY",
                      help="scheduled collects: only this modality")
    peer_tls(sadd)
    off = sadd.add_argument_group("storage offload: collect its oldest studies when its free "
                                  "capacity is low (checked on the --every schedule; nothing "
                                  "is deleted from it)")
    off.add_argument("--capacity-url", default="", metavar="URL",
                     help="its REST API that reports its storage (an Orthanc: "
                     "http://HOST:8042)")
    off.add_argument("--offload-below", default="", metavar="N%%|NMiB",
                     help="collect when its free capacity is below this share of its maximum "
                     "storage, or below this many MiB")
    off.add_argument("--capacity-max-mib", type=int, default=0, metavar="MIB",
                     help="its maximum storage (Orthanc's MaximumStorageSize), where it does "
                     "not report it (Orthanc 1.10 does not)")
    client_options(sadd)
    sadd.add_argument("--json", action="store_true", help="the source (DicomSource) as JSON")
    sadd.set_defaults(func=_source_add)
    slist = ssub.add_parser("list", help="your sources")
    client_options(slist)
    slist.add_argument("--json", action="store_true", help="as JSON: a list of DicomSource")
    slist.set_defaults(func=_source_list)
    srm = ssub.add_parser("rm", help="remove a source (what it collected stays)")
    srm.add_argument("name", metavar="NAME", help="the source's name")
    client_options(srm)
    srm.add_argument("--json", action="store_true", help="as JSON: {name, removed}")
    srm.set_defaults(func=_source_rm)

    collect = sub.add_parser("collect", help="query a PACS source and retrieve the matching "
                             "series not collected before (then routed as received)",
                             description="C-FIND at series level with the filters given, "
                             "then C-MOVE or C-GET of every series not collected before.")
    collect.add_argument("source", metavar="SOURCE", help="the source's name")
    collect.add_argument("--modality", default="",
                         help="only studies of this modality (CT, MR ...)")
    collect.add_argument("--date-from", default="", help="study date, YYYYMMDD (inclusive)")
    collect.add_argument("--date-to", default="", help="study date, YYYYMMDD (inclusive)")
    collect.add_argument("--study-uid", default="", help="one study")
    collect.add_argument("--patient-id", default="", help="one patient's studies")
    collect.add_argument("--method", choices=["move", "get"], default="",
                         help="override the source's method")
    client_options(collect)
    collect.add_argument("--json", action="store_true",
                         help="the outcome (CollectResponse) as JSON")
    collect.set_defaults(func=_collect)
