"""``medcompute serve``: its arguments, the ServerConfig they make, and running the server;
and the few server-side pieces the command line uses offline, on a data directory on the
server's machine (API keys and the audit log, calling AE titles, invoices as CSV).

The client reaches the server only through this module, imported on first use by
``medcompute.client.cli.common.server_side``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from medcompute.server.config import DEFAULT_ADDRESS, DEFAULT_DATA_DIR, ServerConfig
from medcompute.server.errors import MedcomputeError
from medcompute.server.storage.space import DEFAULT_MIN_FREE, parse_min_free
from medcompute.server.storage.studies import StatusRules, parse_rule
from medcompute.server.store.versions import parse_version

__all__ = ["add_parser", "run", "DEFAULT_DATA_DIR", "MedcomputeError", "key_store",
           "audit_log", "node_registry", "invoice_csv"]


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}


def _byte_size(text: str) -> int:
    """``65536``, ``64MiB``, ``1.5GiB``: a size in bytes (KiB, MiB, GiB are powers of 2)."""
    value = text.strip()
    number = value.rstrip("BbKkIiMmGg")
    unit = value[len(number):].strip().lower()
    try:
        size = float(number)
    except ValueError:
        size = -1.0
    if unit not in _UNITS or size < 0:
        raise argparse.ArgumentTypeError(f"expected a size in bytes (e.g. 67108864 or 64MiB), "
                                         f"got {text!r}")
    return int(size * _UNITS[unit])


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _min_free(text: str):
    try:
        return parse_min_free(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _version_spec(text: str):
    try:
        return parse_version(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _status_rule(text: str):
    try:
        return parse_rule(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    """Bytes, or a number with KiB, MiB or GiB (``16MiB``)."""
    value = text.strip()
    for unit, scale in (("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("", 1)):
        if value.endswith(unit) and value[:len(value) - len(unit)].strip().isdigit():
            return int(value[:len(value) - len(unit)]) * scale
    raise argparse.ArgumentTypeError(f"expected bytes, or a number with KiB, MiB or GiB "
                                     f"(16MiB), got {text!r}")


def add_parser(subparsers, *, duration: Callable[[str], float]) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``medcompute`` parser's ``subparsers``; ``duration`` parses the
    DURATION values (3600, 90m, 12h, 30d, 1y) as the command line's other commands do."""
    serve = subparsers.add_parser(
        "serve", help="run the server (gRPC + an embedded Dask cluster)",
        description="Run the gRPC server with an embedded Dask LocalCluster of worker "
        "processes, or joined to an external scheduler.")
    serve.add_argument("--address", default=DEFAULT_ADDRESS,
                       help=f"HOST:PORT to listen on, loopback only (default {DEFAULT_ADDRESS}; "
                       "port 0 picks a free one)")
    serve.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                       help=f"data directory: catalog, image store, job files and spool (default "
                       f"{DEFAULT_DATA_DIR}, or $MEDCOMPUTE_DATA_DIR; see --min-free)")
    serve.add_argument("--catalog", default="", metavar="URL",
                       help="the catalog: postgresql://USER@HOST/DB to share one catalog "
                       "between the front ends of several hosts (with --data-dir on a shared "
                       "filesystem and --scheduler; see docs/several-hosts.md), or "
                       "sqlite:PATH (default: the SQLite file in --data-dir)")
    serve.add_argument("--catalog-timeout", type=duration, default=5.0, metavar="SECONDS",
                       help="a PostgreSQL catalog: how long a call waits for a connection "
                       "before it fails with UNAVAILABLE (default 5s)")
    serve.add_argument("--spool-name", default="", metavar="NAME",
                       help="this front end's own spool folder under DATA_DIR/spool (several "
                       "hosts sharing one data directory: a different NAME each, e.g. the "
                       "host name; default: the spool folder itself)")
    serve.add_argument("--processes", type=int, default=None, metavar="N",
                       help="server processes on the one --address (SO_REUSEPORT), sharing "
                       "the data directory and the Dask cluster, each with its own event "
                       "loop (default: one per 4 cores, at most 8: 1 on a 2-core machine); "
                       "one that ends is started again; the limits below hold per process")
    serve.add_argument("--workers", type=int, default=None,
                       help="CPU worker processes of the embedded cluster (default: one per "
                       "core not taken by a GPU worker)")
    serve.add_argument("--gpu-workers", type=int, default=None,
                       help="GPU worker processes, one per GPU, each pinned with "
                       "CUDA_VISIBLE_DEVICES and declaring GPU=1 (default: every GPU that "
                       "NVML reports and CuPy can use; 0 for none)")
    serve.add_argument("--worker-memory", default="auto",
                       help="memory limit of each embedded worker, e.g. 4GiB (default: auto, "
                       "the machine's memory shared between them)")
    serve.add_argument("--split-mb", type=float, default=64,
                       help="split a volume whose float32 size exceeds this many MiB into "
                       "slabs processed on several workers (default 64)")
    serve.add_argument("--batch-mb", type=float, default=4,
                       help="while the workers are busy, batch jobs up to this many MiB "
                       "(float32) into shared tasks (default 4; 0 sends every job alone)")
    serve.add_argument("--stack-bytes", type=_byte_size, default=64 << 20,
                       help="images of a batch with one shape, dtype and pipeline run as one "
                       "array in one worker call, up to this float32 size per stack (bytes, "
                       "or with KiB/MiB/GiB; default 64MiB; 0: each image alone)")
    serve.add_argument("--batch-delay", type=float, default=2.0, metavar="MS",
                       help="milliseconds a single-image Process call waits for calls with "
                       "the same pipeline and geometry to join its stack (default 2; 0 "
                       "disables dynamic batching)")
    serve.add_argument("--batch-queue", type=int, default=64,
                       help="single-image calls of one subscriber waiting to join a stack; "
                       "more answer RESOURCE_EXHAUSTED (default 64)")
    serve.add_argument("--no-direct-calls", dest="direct_calls", action="store_false",
                       help="send every job as a Dask task (by default small CPU jobs go by "
                       "direct call to a runner actor on each worker, without a scheduler "
                       "round trip)")
    serve.add_argument("--no-memory-inputs", dest="memory_inputs", action="store_false",
                       help="spool every inline image to a file for the worker (by default "
                       "a synchronous call's images up to --batch-mb travel to the worker in "
                       "memory, and its result back)")
    serve.add_argument("--scheduler", default=None,
                       help="address of an external Dask scheduler (tcp://HOST:PORT) "
                       "instead of an embedded cluster")
    security = serve.add_argument_group("security (see README: Running it for real)")
    security.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain")
    security.add_argument("--tls-key", metavar="PEM", help="... and this private key")
    security.add_argument("--client-ca", metavar="PEM",
                          help="require client certificates signed by this CA (mTLS)")
    security.add_argument("--require-keys", action="store_true",
                          help="require an API key on every call, even before the first key "
                          "exists (without it, a loopback server with no keys serves every "
                          "call as subscriber 'local')")
    security.add_argument("--insecure", action="store_true",
                          help="allow a non-loopback address without TLS or required keys "
                          "(logged loudly; for closed networks only)")
    limits = serve.add_argument_group("limits (over a limit: RESOURCE_EXHAUSTED at once)")
    limits.add_argument("--max-image-mb", type=float, default=4096,
                        help="largest image, decoded MiB (default 4096)")
    limits.add_argument("--max-voxels", type=int, default=1 << 30,
                        help="largest image in voxels (default 2**30)")
    limits.add_argument("--max-jobs-per-subscriber", type=int, default=16,
                        help="jobs in progress per subscriber (default 16)")
    limits.add_argument("--max-queue", type=int, default=64,
                        help="jobs in progress on this server (default 64)")
    limits.add_argument("--max-streams", type=int, default=128,
                        help="streaming calls open at once (default 128)")
    limits.add_argument("--software-memory-mb", type=_positive, default=1024,
                        help="address space a software package's operation may use for one "
                        "image, in its own process (default 1024)")
    limits.add_argument("--software-seconds", type=_positive, default=120,
                        help="seconds a software package's operation may run for one image "
                        "(default 120)")
    limits.add_argument("--max-pending-jobs", type=int, default=1000,
                        help="asynchronous jobs waiting or running per subscriber "
                        "(default 1000)")
    limits.add_argument("--min-free", type=_min_free, default=_min_free(DEFAULT_MIN_FREE),
                        metavar="MB|PERCENT",
                        help="free-space reserve of the data directory, in MiB (e.g. 4096) or "
                        "as a percentage of its filesystem (e.g. 5%%): below it, calls that "
                        "write (register, submit, process, kept results) are refused with "
                        "RESOURCE_EXHAUSTED, while reads, fetches, deletes, purges and key "
                        f"administration still work (default {DEFAULT_MIN_FREE} MiB; "
                        "see README: Running it for real)")
    limits.add_argument("--version", type=_version_spec, action="append", metavar="SPEC",
                        help="a compressed version kept of each stored DICOM image, "
                        "NAME=RATIO[:PURPOSE] (lossy JPEG 2000 at that compression ratio) or "
                        "NAME=lossless[:PURPOSE]; repeat for several; replaces the defaults "
                        "lossless=lossless:archive, review=10:review, thumbnail=40:thumbnail")
    limits.add_argument("--make-versions", action="store_true",
                        help="make every version of a newly registered DICOM image at once, in "
                        "the background on the workers (default: each on its first request)")
    reading = serve.add_argument_group("reading status")
    reading.add_argument("--statuses", metavar="LIST",
                         help="the reading statuses a study may have, comma-separated, unread "
                         "first (default unread,read,archived)")
    reading.add_argument("--status-rule", type=_status_rule, action="append", metavar="RULE",
                         help="STATUS=VERSION[,VERSION...]: the versions (original, a version "
                         "name, * for all) a study in STATUS may serve, e.g. "
                         "unread=original,lossless; repeatable; a status without a rule serves "
                         "every version")
    tiers = serve.add_argument_group("storage tiers")
    tiers.add_argument("--cold-dir", metavar="DIR",
                       help="the cold tier: another directory or mount for originals and "
                       "lossless versions the policy moves there (the data directory is hot)")
    tiers.add_argument("--cold-after", type=duration, metavar="DURATION",
                       help="move images older than this to cold (e.g. 90d), at each upkeep "
                       "round (hourly) or on `medcompute store tier-policy`")
    tiers.add_argument("--cold-status", action="append", metavar="STATUS",
                       help="move the images of studies in this reading status to cold "
                       "(repeatable; e.g. archived)")
    tiers.add_argument("--cold-mode", choices=["move", "copy"], default="move",
                       help="move: originals and lossless versions move to cold, lossy "
                       "versions stay hot (default); copy: every version, lossy ones too, is "
                       "kept on both tiers")
    tiers.add_argument("--recall-on-read", action="store_true",
                       help="a read served from cold moves the image back to hot")
    jobs = serve.add_argument_group("asynchronous jobs, billing and monitoring")
    jobs.add_argument("--result-retention", type=duration, default=7 * 86400.0,
                      metavar="DURATION",
                      help="keep the results of asynchronous jobs this long for fetching "
                      "(e.g. 12h, 30d; default 7d)")
    jobs.add_argument("--job-lease", type=float, default=30.0, metavar="SECONDS",
                      help="after a crash, this server's jobs are taken over (run again) by "
                      "the next server of the data directory once this many seconds have "
                      "passed (default 30)")
    jobs.add_argument("--tariff", metavar="TOML",
                      help="the prices that turn usage into invoices (default: the built-in "
                      "example tariff; see README: Usage and billing)")
    jobs.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                      help="serve Prometheus metrics on http://ADDRESS:PORT/metrics "
                      "(0: any free port; default: off)")
    jobs.add_argument("--metrics-address", default="127.0.0.1", metavar="HOST",
                      help="the address of the metrics endpoint (default 127.0.0.1)")
    dicom = serve.add_argument_group("as a DICOM node (see README: As a DICOM node)")
    dicom.add_argument("--dicom-port", type=int, default=None, metavar="PORT",
                       help="also accept DICOM associations (C-ECHO, C-STORE) on this port "
                       "(0: any free port; default: off)")
    dicom.add_argument("--dicom-address", default="127.0.0.1", metavar="HOST",
                       help="the address of the DICOM port (default 127.0.0.1; another needs "
                       "--dicom-tls-cert/--dicom-tls-key, or --insecure)")
    dicom.add_argument("--dicom-tls-cert", default=None, metavar="PEM",
                       help="DICOM TLS on the DICOM port: this server's certificate (chain), "
                       "with --dicom-tls-key; callers must then speak TLS")
    dicom.add_argument("--dicom-tls-key", default=None, metavar="PEM",
                       help="the private key of --dicom-tls-cert (unencrypted PEM)")
    dicom.add_argument("--dicom-tls-ca", default=None, metavar="PEM",
                       help="also require each caller's certificate, signed by one of these "
                       "CA certificates (mutual TLS)")
    dicom.add_argument("--ae-title", default="MEDCOMPUTE", metavar="AET",
                       help="the service's own AE title (default MEDCOMPUTE)")
    dicom.add_argument("--series-quiet", type=float, default=10.0, metavar="SECONDS",
                       help="a received series is complete after this many seconds without "
                       "a new instance (default 10)")
    dicom.add_argument("--complete-on-release", action="store_true",
                       help="... or as soon as the association that sent it is released")
    dicom.add_argument("--max-associations", type=int, default=16, metavar="N",
                       help="DICOM associations accepted at once; more are rejected "
                       "(default 16)")
    dicom.add_argument("--dicom-ae-alias", action="append", default=[], metavar="AET",
                       help="another called AE title the node answers to (repeat for more); "
                       "any other called AE title is rejected (\"called AE title not "
                       "recognised\")")
    dicom.add_argument("--dicom-pending-timeout", type=float, default=5.0, metavar="SECONDS",
                       help="close a connection that has not sent its whole A-ASSOCIATE-RQ "
                       "within this many seconds (default 5); waiting connections do not "
                       "count against --max-associations")
    dicom.add_argument("--dicom-max-pdu", type=_size, default=16 << 20, metavar="SIZE",
                       help="largest P-DATA PDU read, announced as the node's maximum length "
                       "(default 16MiB); an A-ASSOCIATE-RQ may have 64KiB; a longer PDU is "
                       "aborted unread")
    dicom.add_argument("--dicom-max-per-host", type=int, default=8, metavar="N",
                       help="DICOM connections open at once from one host, waiting or "
                       "associated (default 8); more are closed at once")
    dicom.add_argument("--max-instance-mb", type=float, default=512, metavar="MIB",
                       help="largest instance accepted over DICOM (default 512; larger: "
                       "status A700)")
    dicom.add_argument("--push-attempts", type=int, default=5, metavar="N",
                       help="tries of a push to a DICOM node before it fails, for transient "
                       "failures (default 5)")
    dicom.add_argument("--push-backoff", type=float, default=5.0, metavar="SECONDS",
                       help="wait before the second try of a push, doubled for each further "
                       "one (default 5)")
    dicom.add_argument("--push-associations", type=int, default=4, metavar="N",
                       help="associations a push opens to its DICOM node at once, each "
                       "sending its share, so several instances are in flight (default 4; "
                       "1: one by one)")
    dicom.add_argument("--commit-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="wait for a destination's storage commitment report "
                       "(N-EVENT-REPORT) before the try counts as failed (default 30)")
    web = serve.add_argument_group("the HTTP door: DICOMweb and the console (see "
                                   "docs/dicomweb.md)")
    web.add_argument("--http-port", type=int, default=None, metavar="PORT",
                     help="serve DICOMweb (QIDO-RS, WADO-RS, STOW-RS) under /dicomweb and the "
                     "console on this port, with the same API keys and TLS certificate "
                     "(0: any free port; default: off)")
    web.add_argument("--http-address", default="127.0.0.1", metavar="HOST",
                     help="the address of the HTTP port (default 127.0.0.1; another needs "
                     "--tls-cert/--tls-key and --require-keys, or --insecure)")
    web.add_argument("--http-cors", action="append", default=[], metavar="ORIGIN",
                     help="allow this origin (a viewer served elsewhere, e.g. "
                     "https://viewer.example.org) by CORS; repeatable")
    web.add_argument("--http-viewer", default=None, metavar="DIR",
                     help="serve this built web viewer at / on the HTTP port, configured for "
                     "this service's DICOMweb (the OHIF Viewer's dist/ folder: make ohif "
                     "puts one in .tools/ohif/dist)")
    web.add_argument("--http-max-body-mb", type=float, default=512, metavar="MIB",
                     help="largest STOW-RS request body (default 512; larger: 413)")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"],
                       help="the least severe messages logged (default: info)")
    serve.set_defaults(func=run)
    return serve


def run(args) -> int:
    """Run the server the arguments of ``add_parser``'s command describe, until it is
    interrupted; the exit status (2: the arguments do not make a configuration)."""
    from medcompute.server.app import serve
    from medcompute.server.front_ends import default_processes

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "debug":
        # Dask's own start-up chatter is noise here; its warnings still show.
        logging.getLogger("distributed").setLevel(logging.WARNING)
    config = ServerConfig(address=args.address, data_dir=Path(args.data_dir),
                          workers=args.workers, gpu_workers=args.gpu_workers,
                          scheduler=args.scheduler, worker_memory=args.worker_memory,
                          split_bytes=int(args.split_mb * (1 << 20)),
                          batch_bytes=int(args.batch_mb * (1 << 20)),
                          direct_calls=args.direct_calls, memory_inputs=args.memory_inputs,
                          stack_bytes=args.stack_bytes, batch_delay=args.batch_delay / 1000,
                          batch_queue=args.batch_queue,
                          tls_cert=_path(args.tls_cert), tls_key=_path(args.tls_key),
                          client_ca=_path(args.client_ca), require_keys=args.require_keys,
                          insecure=args.insecure,
                          max_image_bytes=int(args.max_image_mb * (1 << 20)),
                          max_voxels=args.max_voxels,
                          max_jobs_per_subscriber=args.max_jobs_per_subscriber,
                          max_queue=args.max_queue, max_streams=args.max_streams,
                          max_pending_jobs=args.max_pending_jobs,
                          software_memory_bytes=int(args.software_memory_mb * (1 << 20)),
                          software_seconds=args.software_seconds,
                          result_retention=args.result_retention,
                          job_lease_seconds=args.job_lease, tariff=_path(args.tariff),
                          metrics_port=args.metrics_port,
                          metrics_address=args.metrics_address,
                          min_free_bytes=args.min_free.bytes,
                          min_free_percent=args.min_free.percent,
                          dicom_port=args.dicom_port, dicom_address=args.dicom_address,
                          dicom_ae_title=args.ae_title,
                          dicom_quiet_seconds=args.series_quiet,
                          dicom_complete_on_release=args.complete_on_release,
                          dicom_max_associations=args.max_associations,
                          dicom_ae_aliases=tuple(args.dicom_ae_alias),
                          dicom_pending_timeout=args.dicom_pending_timeout,
                          dicom_max_pdu=args.dicom_max_pdu,
                          dicom_max_per_host=args.dicom_max_per_host,
                          dicom_max_instance_bytes=int(args.max_instance_mb * (1 << 20)),
                          dicom_push_attempts=args.push_attempts,
                          dicom_push_backoff=args.push_backoff,
                          dicom_push_associations=args.push_associations,
                          dicom_commit_timeout=args.commit_timeout,
                          dicom_tls_cert=args.dicom_tls_cert or "",
                          dicom_tls_key=args.dicom_tls_key or "",
                          dicom_tls_ca=args.dicom_tls_ca or "",
                          http_port=args.http_port, http_address=args.http_address,
                          http_cors=tuple(args.http_cors), http_viewer=_path(args.http_viewer),
                          http_max_body_bytes=int(args.http_max_body_mb * (1 << 20)),
                          processes=(args.processes if args.processes is not None
                                     else default_processes()),
                          catalog=args.catalog, spool_name=args.spool_name,
                          catalog_timeout=args.catalog_timeout)
    config.cold_dir = _path(args.cold_dir)
    config.cold_after = args.cold_after
    config.cold_statuses = tuple(args.cold_status or ())
    config.recall_on_read = args.recall_on_read
    config.cold_mode = args.cold_mode
    config.make_versions = args.make_versions
    if config.cold_dir is None and (args.cold_after is not None or args.cold_status
                                    or args.recall_on_read):
        print("medcompute serve: --cold-after, --cold-status and --recall-on-read need "
              "--cold-dir", file=sys.stderr)
        return 2
    if args.statuses:
        config.statuses = tuple(v.strip() for v in args.statuses.split(",") if v.strip())
    if args.status_rule:
        config.status_rules = dict(args.status_rule)
    if args.version:
        names = [v.name for v in args.version]
        if len(set(names)) != len(names):
            print("medcompute serve: --version: each name once", file=sys.stderr)
            return 2
        config.versions = tuple(args.version)
    try:
        StatusRules(config.statuses, config.status_rules).check_config(
            [v.name for v in config.versions])
    except ValueError as exc:
        print(f"medcompute serve: {exc}", file=sys.stderr)
        return 2
    for flag, value in (("--processes", config.processes),
                        ("--push-associations", config.dicom_push_associations),
                        ("--batch-queue", config.batch_queue)):
        if value < 1:
            print(f"medcompute serve: {flag}: expected >= 1, got {value}", file=sys.stderr)
            return 2
    problem = catalog_problem(config.catalog, config.spool_name, config.catalog_timeout)
    if problem:
        print(f"medcompute serve: {problem}", file=sys.stderr)
        return 2
    if config.batch_delay < 0:
        print(f"medcompute serve: --batch-delay: expected >= 0, got {args.batch_delay:g}",
              file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config))
    except MedcomputeError as exc:
        print(f"medcompute serve: {exc.details}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0



def catalog_problem(catalog: str, spool_name: str, timeout: float = 5.0) -> str | None:
    """What is wrong with ``--catalog``, ``--spool-name`` or ``--catalog-timeout``; None
    when nothing is."""
    from medcompute.server.storage.postgres import is_url
    if catalog and not is_url(catalog) and not catalog.startswith("sqlite:"):
        scheme = catalog.split("://")[0].split(":")[0]
        return (f"--catalog: expected postgresql://USER@HOST/DB or sqlite:PATH, got a value "
                f"starting {scheme!r}")
    if catalog == "sqlite:":
        return "--catalog: sqlite:PATH needs the catalog file's PATH"
    if not timeout > 0:
        return f"--catalog-timeout: expected more than 0 seconds, got {timeout:g}"
    if spool_name and (spool_name in (".", "..") or not re.fullmatch(r"[\w.-]+", spool_name)):
        return (f"--spool-name: expected a folder name (letters, digits, '.', '-', '_'), "
                f"got {spool_name!r}")
    return None


# -- offline, on the data directory (``--data-dir``) of the server's machine ----------------
def key_store(data_dir: str | Path):
    """The data directory's API keys (``medcompute keys ... --data-dir``)."""
    from medcompute.server.storage.keys import KeyStore

    return KeyStore(Path(data_dir))


def adopt_images(data_dir: str | Path, subscriber: str, from_subscriber: str = "") -> list[str]:
    """Hand every image of ``from_subscriber`` (default: the keyless subscriber, ``local``)
    to ``subscriber`` (``medcompute store adopt --data-dir``); the ids handed over. Its
    refusals are :class:`MedcomputeError`."""
    from medcompute.server.storage.adoption import Adoption

    store = Adoption(Path(data_dir))
    try:
        return store.adopt(from_subscriber or ServerConfig.subscriber, subscriber)
    finally:
        store.close()


def audit_log(data_dir: str | Path):
    """The data directory's audit log (``medcompute audit --data-dir``)."""
    from medcompute.server.storage.audit import AuditLog

    return AuditLog(Path(data_dir))


def node_registry(data_dir: str | Path):
    """The data directory's calling AE titles (``medcompute dicom ae ... --data-dir``);
    its refusals are :class:`MedcomputeError`."""
    from medcompute.server.dicomnet.registry import NodeRegistry

    return NodeRegistry(data_dir)


def invoice_csv(invoice: Mapping) -> str:
    """An invoice (the Invoice message as a dict) as the server's CSV."""
    from medcompute.server.billing.invoices import to_csv

    return to_csv(invoice)


# -- the catalog (``medcompute catalog migrate|copy``) ------------------------------------
def _register_tables() -> None:
    """Import every module that keeps tables in the catalog, so that opening one brings
    ALL of them to the current version (not only those this process happened to use)."""
    import medcompute.server.dicomnet.collect
    import medcompute.server.dicomnet.push
    import medcompute.server.dicomnet.registry
    import medcompute.server.dicomnet.routing
    import medcompute.server.jobs.catalog
    import medcompute.server.storage.audit
    import medcompute.server.storage.deliveries
    import medcompute.server.storage.fetches
    import medcompute.server.storage.images
    import medcompute.server.storage.keys
    import medcompute.server.storage.studies
    import medcompute.server.storage.usage  # noqa: F401


def open_catalog(spec: str | None, data_dir: str | Path | None = None):
    """The catalog ``spec`` names (``--catalog``; None: ``data_dir``'s SQLite file) at the
    current version of every table; its errors are ValueError (the spec) or
    :class:`MedcomputeError` (e.g. the database is unreachable)."""
    from medcompute.server.storage.db import Database

    _register_tables()
    return Database.open(spec or None, data_dir)


def catalog_migrate(spec: str | None, data_dir: str | Path | None = None) -> dict[str, int]:
    """Bring the catalog to the current version; each table module's version."""
    db = open_catalog(spec, data_dir)
    try:
        return db.versions()
    finally:
        db.close()


def catalog_copy(source: str, target: str):
    """Copy the catalog ``source`` into the empty catalog ``target`` and verify it row for
    row (storage/transfer.py); the copy's report."""
    from medcompute.server.storage.transfer import copy

    src = open_catalog(source)
    try:
        dst = open_catalog(target)
        try:
            return copy(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
