"""The command line of asynchronous jobs and deliveries.

    medcompute submit INPUT... --op ... [--to SUBSCRIBER] [--key KEY] [--label TEXT] [--wait]
    medcompute watch JOB
    medcompute fetch JOB -o OUTPUT
    medcompute cancel JOB
    medcompute jobs [--state S] [--since DATE] [--operation OP] [--label TEXT] [--json]
    medcompute inbox [--watch] [--unfetched] [--json]
    medcompute deliveries allow|disallow SENDER RECIPIENT, deliveries list   (admin)
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import grpc

from medcompute.client import exits
from medcompute.client.cli.common import (
    add_process_options,
    add_request_arguments,
    open_client,
    parse_moment,
    process_options,
)
from medcompute.client.client import ServiceError
from medcompute.client.output import message_json, print_json

__all__ = ["add_commands"]

_ENDED = ("SUCCEEDED", "FAILED", "CANCELLED")
_RESULTS = {"array": "array", "dicom-file": "dicom_file", "dicom-series": "dicom_series"}


def _state(info) -> str:
    from medcompute.proto.v1 import jobs_pb2

    return jobs_pb2.JobState.Name(info.state).removeprefix("JOB_STATE_")


def _delivery(info) -> str:
    from medcompute.proto.v1 import jobs_pb2

    return jobs_pb2.DeliveryState.Name(info.delivery).removeprefix("DELIVERY_STATE_").lower()


def _when(ts: float) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _show(info, out=None) -> None:
    line = f"job {info.job_id}: {_state(info)}"
    if info.destination:
        line += f", for {info.destination} ({_delivery(info)})"
    if info.error:
        line += f": {info.error}"
    print(line, file=out or sys.stderr)


def _follow(client, job_id: str, *, quiet: bool, timeout: float | None = None,
            as_json: bool = False) -> tuple[int, object]:
    """Follow a job until it ends, with a progress bar on a terminal (with ``as_json``,
    each event as a JSON line on stdout instead); the exit status and the final JobInfo."""
    bar = None
    if sys.stderr.isatty() and not quiet and not as_json:
        from tqdm import tqdm

        bar = tqdm(total=100, desc=job_id[:12], unit="%", leave=False,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
    last = None
    try:
        for event in client.watch(job_id, timeout=timeout):
            last = event.job
            if as_json:
                print_json(message_json(event), lines=True)
            elif bar is not None:
                bar.n = round(100 * event.job.progress)
                bar.set_postfix_str(f"{_state(event.job)}: {event.message}")
            elif not quiet:
                print(f"{_when(time.time())} {_state(event.job):<10} "
                      f"{100 * event.job.progress:5.1f}%  {event.message}", file=sys.stderr)
    finally:
        if bar is not None:
            bar.close()
    if last is None:
        last = client.job(job_id)
    if not quiet and not as_json:
        _show(last)
    return (exits.OK if _state(last) == "SUCCEEDED" else exits.JOB_FAILED), last


def _write(result, out: Path) -> list[Path]:
    import numpy as np

    from medcompute.client.io import output_kind, write_dicom

    kind = output_kind(out)
    if result.array is not None:
        if kind != "npy":
            raise ValueError(f"{out}: the result is an array; write it to a .npy file")
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, result.array)
        return [out]
    if kind == "npy":
        raise ValueError(f"{out}: the result is DICOM; give a .dcm file or a folder")
    return write_dicom(result.files, out)


# -- commands ---------------------------------------------------------------------
def _submit(args) -> int:
    from medcompute.client.ops import parse_op

    try:
        ops = [parse_op(text) for text in args.op]
    except ValueError as exc:
        print(f"medcompute submit: {exc}", file=sys.stderr)
        return exits.USAGE
    progress = sys.stderr.isatty() and not args.quiet
    with open_client(args) as client:
        try:
            info = client.submit(
                args.inputs if len(args.inputs) > 1 else args.inputs[0], ops,
                idempotency_key=args.key or "", destination=args.to or "",
                label=args.label or "", spacing=args.spacing,
                operands=[args.operand] if args.operand else (), device=args.device,
                allow_fallback=args.allow_fallback, output_dtype=args.output_dtype,
                output=_RESULTS[args.result], compression=args.compression,
                progress=progress, **process_options(args))
        except ValueError as exc:
            print(f"medcompute submit: {exc}", file=sys.stderr)
            return exits.USAGE
        if not args.json:
            print(info.job_id, flush=True)
        if not args.quiet and not args.json:
            _show(info)
        if not args.wait:
            if args.json:
                print_json(message_json(info))
            return exits.OK
        status, info = _follow(client, info.job_id, quiet=args.quiet or args.json)
        if status == exits.OK and args.output:
            try:
                written = _write(client.fetch(info.job_id, progress=progress),
                                 Path(args.output))
            except ValueError as exc:
                print(f"medcompute submit: {exc}", file=sys.stderr)
                return exits.USAGE
            if not args.quiet and not args.json:
                print(f"  {len(written)} file(s) written to {args.output}", file=sys.stderr)
        if args.json:
            print_json(message_json(info))
        return status


def _watch(args) -> int:
    with open_client(args) as client:
        status, _ = _follow(client, args.job, quiet=args.quiet, timeout=args.timeout,
                            as_json=args.json)
    return status


def _fetch(args) -> int:
    out = Path(args.output)
    progress = sys.stderr.isatty() and not args.quiet
    with open_client(args) as client:
        result = client.fetch(args.job, progress=progress)
    try:
        written = _write(result, out)
    except ValueError as exc:
        print(f"medcompute fetch: {exc}", file=sys.stderr)
        return exits.USAGE
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif not args.quiet:
        print(f"job {args.job}: {len(written)} file(s) written to {out}", file=sys.stderr)
        for a in result.applied:
            print(f"  applied {a['summary']}", file=sys.stderr)
    return 0


def _cancel(args) -> int:
    with open_client(args) as client:
        info = client.cancel(args.job)
    if args.json:
        print_json(message_json(info))
    elif args.quiet:
        print(info.job_id)
    else:
        _show(info, sys.stdout)
    return exits.OK if _state(info) == "CANCELLED" else exits.JOB_FAILED


def _jobs(args) -> int:
    with open_client(args) as client:
        try:
            page = client.jobs(states=args.state or (), since=args.since or 0.0,
                               until=args.until or 0.0,
                               operation=args.operation or "", label=args.label or "",
                               subscriber=args.subscriber or "", limit=args.limit)
        except ValueError as exc:
            print(f"medcompute jobs: {exc}", file=sys.stderr)
            return exits.USAGE
    if args.json:
        print_json(message_json(page))
        return exits.OK
    if args.quiet:
        for j in page.jobs:
            print(j.job_id)
        return exits.OK
    print(f"{'JOB':<32}  {'STATE':<10} {'CREATED (UTC)':<19}  {'KIND':<5} "
          f"{'DELIVERED TO':<22} OPERATIONS / LABEL")
    for j in page.jobs:
        kind = "async" if j.asynchronous else "sync"
        to = f"{j.destination} ({_delivery(j)})" if j.destination else "-"
        what = "+".join(j.operations) + (f"  [{j.label}]" if j.label else "")
        print(f"{j.job_id:<32}  {_state(j):<10} {_when(j.created_at):<19}  {kind:<5} "
              f"{to:<22} {what}")
    if page.next_page_token:
        print(f"(more: --limit {args.limit * 2}, or narrow with --since/--state)",
              file=sys.stderr)
    return 0


def _delivery_line(d) -> str:
    fetched = "fetched " + _when(d.fetched_at) if d.fetched_at else "new"
    label = f"  [{d.label}]" if d.label else ""
    return (f"{d.seq:>6}  {d.job_id:<32}  from {d.sender:<12} {_when(d.delivered_at)}  "
            f"{'+'.join(d.operations)}  {fetched}{label}")


def _inbox(args) -> int:
    with open_client(args) as client:
        if args.watch:
            if not args.json:
                print("watching the inbox; Ctrl-C stops", file=sys.stderr)
            try:
                for d in client.watch_inbox(after_seq=args.after, new_only=args.new_only,
                                            timeout=args.timeout):
                    if args.json:
                        print_json(message_json(d), lines=True)
                    else:
                        print(d.job_id if args.quiet else _delivery_line(d), flush=True)
            except KeyboardInterrupt:
                return 0
            except ServiceError as exc:
                if exc.code != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
            return 0
        deliveries = client.inbox(unfetched_only=args.unfetched, after_seq=args.after,
                                  limit=args.limit)
    if args.json:
        print_json([message_json(d) for d in deliveries])
        return exits.OK
    for d in deliveries:
        print(d.job_id if args.quiet else _delivery_line(d))
    if not deliveries:
        print("the inbox is empty" + (" (of unfetched results)" if args.unfetched else ""),
              file=sys.stderr)
    return 0


def _deliveries(args) -> int:
    with open_client(args) as client:
        if args.action == "list":
            rules = client.delivery_rules(sender=args.sender or "",
                                          recipient=args.recipient or "")
            if args.json:
                print_json([message_json(r) for r in rules])
                return exits.OK
            for r in rules:
                print(f"{r.sender} -> {r.recipient}  (since {_when(r.created_at)})")
            if not rules:
                print("no delivery rules", file=sys.stderr)
            return 0
        if not args.sender or not args.recipient:
            print(f"medcompute deliveries {args.action}: give SENDER and RECIPIENT",
                  file=sys.stderr)
            return exits.USAGE
        if args.action == "allow":
            rule = client.allow_delivery(args.sender, args.recipient)
            text = f"{args.sender} may deliver results to {args.recipient}"
        else:
            rule = client.disallow_delivery(args.sender, args.recipient)
            text = f"{args.sender} may no longer deliver results to {args.recipient}"
    if args.json:
        print_json(message_json(rule))
    else:
        print(text)
    return exits.OK


def add_commands(sub, client_options) -> None:
    p = sub.add_parser(
        "submit", help="submit a job and return at once (prints the job id)",
        description="Send an image and a pipeline; the server stores the inputs, queues the "
        "job and answers with its id at once. Follow it with `medcompute watch JOB`, get the "
        "result with `medcompute fetch JOB -o OUT`.")
    add_request_arguments(p)
    p.add_argument("--to", metavar="SUBSCRIBER",
                   help="deliver the result to this subscriber's inbox (an administrator "
                   "allows it: medcompute deliveries allow)")
    p.add_argument("--key", metavar="KEY",
                   help="idempotency key: submitting again with the same key returns the "
                   "same job, never a second one (safe retries)")
    p.add_argument("--label", metavar="TEXT",
                   help="free text shown in job lists and the recipient's inbox (no patient "
                   "data)")
    p.add_argument("--result", choices=sorted(_RESULTS), default="array",
                   help="the result's form: an array, or (DICOM input) one DICOM file or a "
                   "derived series (default array)")
    p.add_argument("--wait", action="store_true",
                   help="then follow the job until it ends (exit status 1 unless it "
                   "succeeded)")
    p.add_argument("-o", "--output", metavar="OUTPUT",
                   help="with --wait: fetch the result to .npy, .dcm or a folder")
    p.add_argument("-q", "--quiet", action="store_true", help="print the job id only")
    p.add_argument("--json", action="store_true",
                   help="print the job (JobInfo) as JSON instead; with --wait, as it ended")
    add_process_options(p)
    client_options(p)
    p.set_defaults(func=_submit)

    p = sub.add_parser("watch", help="follow a job's state and progress until it ends",
                       description="Follow a job until it ends; exit status 0 when it "
                       "succeeded, 1 otherwise.")
    p.add_argument("job", metavar="JOB", help="the job id submit printed")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, only the status")
    p.add_argument("--json", action="store_true",
                   help="each event (WatchJobResponse: job, message) as one JSON line")
    client_options(p, watch="until the job ends")
    p.set_defaults(func=_watch)

    p = sub.add_parser("fetch", help="write the result of a job that succeeded",
                       description="Fetch the result of a SUCCEEDED job: yours, or one "
                       "delivered to your inbox.")
    p.add_argument("job", metavar="JOB", help="the job id submit printed")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help=".npy for an array result; .dcm or a folder for a DICOM one")
    p.add_argument("--json", action="store_true", help="print the result header as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    client_options(p)
    p.set_defaults(func=_fetch)

    p = sub.add_parser("cancel", help="cancel a job that has not ended",
                       description="Cancel a job; exit status 0 when it is cancelled, 1 when "
                       "it had already ended otherwise.")
    p.add_argument("job", metavar="JOB", help="the job id submit printed")
    p.add_argument("--json", action="store_true", help="print the job (JobInfo) as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print the job id only")
    client_options(p)
    p.set_defaults(func=_cancel)

    p = sub.add_parser("jobs", help="list your jobs, newest first",
                       description="List your jobs (asynchronous and synchronous), newest "
                       "first.")
    p.add_argument("--state", action="append", metavar="STATE",
                   choices=["receiving", "queued", "running", "succeeded", "failed",
                            "cancelled"], help="only jobs in this state (repeatable)")
    p.add_argument("--since", type=parse_moment, metavar="DATE",
                   help="created at or after (YYYY-MM-DD UTC, or Unix seconds)")
    p.add_argument("--until", type=parse_moment, metavar="DATE", help="created before")
    p.add_argument("--operation", metavar="OP", help="only jobs whose pipeline has it")
    p.add_argument("--label", metavar="TEXT", help="only jobs with this label")
    p.add_argument("--subscriber", metavar="NAME", help="another subscriber's (admin)")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true",
                   help="as JSON (ListJobsResponse: jobs, next_page_token)")
    p.add_argument("-q", "--quiet", action="store_true", help="print the job ids only")
    client_options(p)
    p.set_defaults(func=_jobs)

    p = sub.add_parser("inbox", help="results delivered to you (receive role)",
                       description="List the results other subscribers delivered to you; "
                       "with --watch, print each new one as it arrives. Fetch one with "
                       "`medcompute fetch JOB -o OUT`.")
    p.add_argument("--watch", action="store_true",
                   help="keep watching: print every delivery as it arrives (Ctrl-C stops)")
    p.add_argument("--new-only", action="store_true",
                   help="with --watch: only deliveries that arrive from now on")
    p.add_argument("--unfetched", action="store_true", help="only results not fetched yet")
    p.add_argument("--after", type=int, default=0, metavar="SEQ",
                   help="only deliveries after this sequence number")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--json", action="store_true", help="as JSON: a list of Delivery (one "
                   "Delivery per line with --watch)")
    p.add_argument("-q", "--quiet", action="store_true", help="print the job ids only")
    client_options(p, watch="with --watch, until stopped")
    p.set_defaults(func=_inbox)

    p = sub.add_parser("deliveries", help="who may deliver results to whom (admin)",
                       description="Allow a subscriber to deliver results to another one's "
                       "inbox, take it back, or list the rules. Needs the admin role.")
    p.add_argument("action", choices=["allow", "disallow", "list"],
                   help="allow or disallow SENDER to deliver to RECIPIENT, or list the rules")
    p.add_argument("sender", nargs="?", metavar="SENDER", help="the subscriber that sends")
    p.add_argument("recipient", nargs="?", metavar="RECIPIENT",
                   help="the subscriber that receives")
    p.add_argument("--json", action="store_true",
                   help="as JSON: a list of DeliveryRule, or the rule allowed or removed")
    client_options(p)
    p.set_defaults(func=_deliveries)
