"""What the command modules of ``medcompute`` share: the options of a call to the server,
a Client from them, the arguments of a processing request, the parsers of durations and
moments, and the one way into the server's side (``server_side``).

The command modules (admin, capacity, dicom, jobs, process, store, studies, tiers, usage)
import this module and the client library, never each other.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re

from medcompute.client.calls import DEFAULT_SERVER
from medcompute.client.channel import connection

__all__ = ["OP_HELP", "server_side", "open_client", "client_options", "add_request_arguments",
           "add_process_options", "process_options", "kept_summary", "parse_duration",
           "parse_moment"]

OP_HELP = """\
an operation, NAME[:key=value,...], applied in the order given; e.g.
gaussian:sigma=2 (voxels), gaussian:sigma_mm=1.5 (millimetres),
gaussian:sigma_mm=[1.5,0.7,0.7] (per axis), edge:operator=sobel, mip:axis=0,
bandpass:low_cutoff_mm=2,high_cutoff_mm=20. `medcompute ops` lists them all."""

_NUMBER = re.compile(r"\d+(\.\d*)?")


def server_side():
    """The server's ``serve`` module (server/serve.py): the ``serve`` command, and the
    offline helpers of the commands that work on a data directory on the server's machine
    (``--data-dir``). The client's only import of the server, made on first use."""
    from medcompute.server import serve

    return serve


def open_client(args):
    """A Client for the server, key and TLS files a command's arguments name."""
    from medcompute.client import Client

    return Client(args.server, timeout=args.timeout, **connection(args))


def client_options(p, server_default=DEFAULT_SERVER, server_help=None, watch=None) -> None:
    """The options of a command that calls the server: --server, --timeout (or, with
    ``watch``, how long to watch), --api-key and the TLS files."""
    p.add_argument("--server", default=server_default,
                   help=server_help or f"HOST:PORT of the server (default "
                   f"{DEFAULT_SERVER}, or $MEDCOMPUTE_SERVER)")
    if watch:
        p.add_argument("--timeout", type=float, default=None,
                       help=f"stop watching after this many seconds (default: {watch})")
    else:
        p.add_argument("--timeout", type=float, default=600.0,
                       help="seconds the call may take (default 600)")
    p.add_argument("--api-key", default=None,
                   help="the subscriber's API key (default $MEDCOMPUTE_API_KEY)")
    p.add_argument("--tls-ca", metavar="PEM",
                   help="connect with TLS; the CA of the server's certificate")
    p.add_argument("--tls-cert", metavar="PEM", help="client certificate (mTLS)")
    p.add_argument("--tls-key", metavar="PEM", help="its private key")


def add_request_arguments(parser) -> None:
    """The arguments of a processing request (``process`` and ``submit``)."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="a .npy file, a DICOM file, several DICOM files of one series, "
                        "a folder of them, id:ID (an image in the server's store) or "
                        "id:ID@VERSION (a compressed version of it, e.g. id:ID@review)")
    parser.add_argument("--op", action="append", required=True, metavar="NAME[:key=value,...]",
                        help=OP_HELP)
    parser.add_argument("--operand", metavar="PATH",
                        help="the second image for subtract/add (same forms as INPUT)")
    parser.add_argument("--spacing", type=float, nargs="+", metavar="MM",
                        help="voxel spacing in mm per axis (DICOM input: from the files)")
    parser.add_argument("--device", choices=["auto", "gpu", "cpu"], default="auto",
                        help="where to run (default auto: a GPU worker if one fits, else CPU)")
    parser.add_argument("--allow-fallback", action="store_true",
                        help="with --device gpu: run on CPU if the cluster has no GPU")
    parser.add_argument("--output-dtype", default="float32",
                        choices=["uint8", "int8", "uint16", "int16", "uint32", "int32",
                                 "float32", "float64"],
                        help="result voxel type, saturating cast (default float32)")
    parser.add_argument("--compression", choices=["none", "zstd", "blosc"], default="none",
                        help="lossless compression of the transfer (default none)")


def add_process_options(parser) -> None:
    """The store's options of ``medcompute process``."""
    parser.add_argument("--store", action="store_true",
                        help="keep the result in the store as a derived image (its id is "
                        "printed)")
    parser.add_argument("--retention", type=parse_duration, metavar="DURATION",
                        help="with --store: keep the derived image this long (12h, 30d)")
    parser.add_argument("--recompute", action="store_true",
                        help="compute even when the store holds this result already")


def process_options(args) -> dict:
    return {"store_result": args.store, "retention": args.retention,
            "recompute": args.recompute}


def kept_summary(result) -> str | None:
    if not result.stored_image_id:
        return None
    how = "reused (nothing computed)" if result.reused else "kept"
    return f"  {how}: derived image {result.stored_image_id}"


def where_summary(result) -> str:
    """Where the result was computed, and how long it took; for a result the store
    already held, that nothing was computed (its header names no worker)."""
    usage = result.usage
    wall = f"wall {usage.get('wall_seconds', 0):.3f} s"
    if result.reused:
        return f"  nothing computed: the stored result was sent; {wall}"
    h = result.header
    worker = f" ({h.worker})" if h.worker else ""
    return (f"  on {h.backend}/{h.device}{worker}; compute "
            f"{usage.get('compute_seconds', 0):.3f} s, {wall}")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_duration(text: str) -> float:
    """Seconds from ``3600``, ``90m``, ``12h``, ``30d``, ``2w`` or ``1y``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdwy]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 3600, 90m, 12h, 30d or 1y, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def parse_moment(text: str) -> float:
    """Unix seconds from ``2026-11-23`` (UTC midnight), ``2026-11-23T08:00`` (UTC unless
    an offset is given) or unix seconds such as ``1795392000``."""
    text = text.strip()
    if _NUMBER.fullmatch(text):
        return float(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date like 2026-11-23, a time like 2026-11-23T08:00 (UTC) or unix "
            f"seconds, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()
