"""Server configuration: one dataclass, filled from the command line.

A leaf: it imports nothing of the server. Its defaults are plain data, read by the rooms
that use them (the versions by store/versions.py, the reading statuses by
storage/studies.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ServerConfig", "VersionSpec", "DEFAULT_ADDRESS", "DEFAULT_DATA_DIR",
           "DEFAULT_VERSIONS", "DEFAULT_STATUSES", "DEFAULT_RULES"]

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_DATA_DIR = Path(os.environ.get("MEDCOMPUTE_DATA_DIR", "data"))


@dataclass(frozen=True)
class VersionSpec:
    """A compressed version the operator configures (``--version NAME=RATIO[:PURPOSE]``,
    parsed by ``store.versions.parse_version``): a name, a purpose, a ratio (None:
    lossless)."""

    name: str
    purpose: str
    ratio: float | None = None            # None: lossless

    @property
    def lossless(self) -> bool:
        return self.ratio is None


DEFAULT_VERSIONS = (VersionSpec("lossless", "archive"), VersionSpec("review", "review", 10.0),
                    VersionSpec("thumbnail", "thumbnail", 40.0))
#: The reading statuses of studies (storage/studies.py); the first, ``unread``, is every
#: study's status until someone changes it.
DEFAULT_STATUSES = ("unread", "read", "archived")
#: No rule: every status serves every version.
DEFAULT_RULES: dict[str, tuple[str, ...]] = {}


@dataclass
class ServerConfig:
    address: str = DEFAULT_ADDRESS
    data_dir: Path = DEFAULT_DATA_DIR
    #: Worker processes of the embedded cluster; None: one per core.
    workers: int | None = None
    #: External Dask scheduler; None: start an embedded cluster.
    scheduler: str | None = None
    #: GPU workers of the embedded cluster; None: one per GPU that NVML and CuPy see.
    gpu_workers: int | None = None
    #: Memory limit of each embedded worker (bytes, or Dask's "auto", "4GiB", ...).
    worker_memory: str | int = "auto"
    #: A job whose float32 working size exceeds this is split into slabs (CPU workers).
    split_bytes: int = 64 << 20
    #: Jobs up to this float32 size are batched when the workers are busy.
    batch_bytes: int = 4 << 20
    #: Most jobs in one batch task.
    batch_max_items: int = 32
    #: Send small CPU jobs to a runner actor on each worker by direct calls, without a
    #: scheduler round trip per job (False: every job is a Dask task).
    direct_calls: bool = True
    #: Send the inline images of a synchronous call (together at most batch_bytes) to the
    #: worker in memory, with the task, and get the result back the same way, instead of
    #: through spool files (asynchronous jobs keep theirs on disk: they are durable).
    memory_inputs: bool = True
    #: Images of a batch that share shape, dtype and pipeline are processed as one array
    #: (a stack) in one worker call, up to this float32 working size per stack (0: each
    #: image alone). Concurrent single-image calls batched together form stacks too.
    stack_bytes: int = 64 << 20
    #: Seconds a single-image Process call waits for others with the same pipeline and
    #: geometry to join its stack (dynamic batching; 0 disables it).
    batch_delay: float = 0.002
    #: Single-image calls of one subscriber waiting to join a stack; more answer
    #: RESOURCE_EXHAUSTED.
    batch_queue: int = 64
    #: Test double: workers that declare GPU=1 but run the FakeGPU backend (fakegpu.py).
    fake_gpu_workers: int = 0
    fake_gpu_memory: int | None = None
    fake_gpu_control: str | None = None
    #: Largest image accepted, in decoded bytes.
    max_image_bytes: int = 4 << 30
    #: Largest image accepted, in voxels.
    max_voxels: int = 1 << 30
    #: Seconds a graceful stop waits for calls in flight.
    grace: float = 5.0
    #: Subscriber of every call made without a key while the data directory has none
    #: (loopback only).
    subscriber: str = "local"
    #: Require an API key on every call even before the first key exists.
    require_keys: bool = False
    #: Jobs in progress per subscriber; more answer RESOURCE_EXHAUSTED.
    max_jobs_per_subscriber: int = 16
    #: Jobs in progress on this server (its queue); more answer RESOURCE_EXHAUSTED.
    max_queue: int = 64
    #: Streaming calls open at once on this server.
    max_streams: int = 128
    #: Address space (bytes) and seconds a software package's operation may use for one
    #: image, in the process it runs in (worker/packages.py).
    software_memory_bytes: int = 1 << 30
    software_seconds: float = 120.0
    #: TLS: the server's certificate chain and key (PEM files).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: mTLS: require client certificates signed by this CA (PEM).
    client_ca: Path | None = None
    #: Listen on a non-loopback address without TLS or keys (loudly logged).
    insecure: bool = False
    #: Seconds between the store's purges of expired images.
    purge_interval: float = 3600.0
    #: Asynchronous jobs waiting or running per subscriber; more answer RESOURCE_EXHAUSTED.
    max_pending_jobs: int = 1000
    #: Seconds the result of an asynchronous job is kept for fetching.
    result_retention: float = 7 * 86400.0
    #: Seconds a server's claim on a running job lasts without renewal: after a crash,
    #: another server (or the restarted one) takes its jobs over after this long.
    job_lease_seconds: float = 30.0
    #: The tariff that prices usage (TOML); None: the built-in example tariff.
    tariff: Path | None = None
    #: Prometheus metrics over HTTP on this port (0: any free port); None: off.
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    #: Free-space reserve of every storage location of the data directory (space.py):
    #: writes that would go below it are refused with RESOURCE_EXHAUSTED. Bytes, or (when
    #: ``min_free_percent`` is set) a percentage of each location's filesystem size.
    min_free_bytes: int = 1 << 30
    min_free_percent: float = 0.0
    #: DICOM storage SCP on this port (0: any free port); None: off.
    dicom_port: int | None = None
    #: The address it listens on (a non-loopback one needs DICOM TLS, or --insecure).
    dicom_address: str = "127.0.0.1"
    #: DICOM TLS on the DICOM port: the PEM certificate (chain) and key files; with
    #: ``dicom_tls_ca``, callers must present a certificate signed by one of its CAs.
    dicom_tls_cert: str = ""
    dicom_tls_key: str = ""
    dicom_tls_ca: str = ""
    #: The HTTP door (DICOMweb, the console) on this port (0: any free port); None: off.
    #: It takes the server's TLS certificate (tls_cert, tls_key) and API keys.
    http_port: int | None = None
    #: The address it listens on (a non-loopback one needs TLS and keys, or --insecure).
    http_address: str = "127.0.0.1"
    #: Origins allowed by CORS (a viewer served from another origin); empty: none.
    http_cors: tuple[str, ...] = ()
    #: Largest request body (a STOW-RS request), in bytes; larger: 413.
    http_max_body_bytes: int = 512 << 20
    #: A built web viewer (OHIF's dist/) served at / on the HTTP port; None: none.
    http_viewer: Path | None = None
    #: The service's own AE title.
    dicom_ae_title: str = "MEDCOMPUTE"
    #: Other called AE titles the node answers to (``--dicom-ae-alias``); any other called
    #: AE title is rejected ("called AE title not recognised").
    dicom_ae_aliases: tuple[str, ...] = ()
    #: A received series is complete when no instance arrived for this many seconds.
    dicom_quiet_seconds: float = 10.0
    #: ... or at once when the association that sent it is released.
    dicom_complete_on_release: bool = False
    #: DICOM associations open at once; more are rejected (transient, local limit).
    dicom_max_associations: int = 16
    #: Seconds a DICOM connection may take to send its whole A-ASSOCIATE-RQ; then it is
    #: closed. Waiting connections do not count against dicom_max_associations.
    dicom_pending_timeout: float = 5.0
    #: Largest P-DATA-TF PDU read over DICOM (what its header declares), in bytes; the
    #: node announces it as its maximum length. Longer: A-ABORT, connection closed.
    dicom_max_pdu: int = 16 << 20
    #: DICOM connections open at once from one host (waiting or associated).
    dicom_max_per_host: int = 8
    #: Largest instance accepted over DICOM, in bytes; larger ones get 0xA700.
    dicom_max_instance_bytes: int = 512 << 20
    #: Tries of a push to a DICOM node before it fails (transient failures only).
    dicom_push_attempts: int = 5
    #: Seconds before the second try of a push; doubled for each further one.
    dicom_push_backoff: float = 5.0
    #: Associations a push opens to its node at once, each sending its share of the
    #: instances, so several are in flight; 1 sends them one by one.
    dicom_push_associations: int = 4
    #: Seconds a push waits for a destination's storage commitment report (N-EVENT-REPORT)
    #: before the try counts as a transient failure.
    dicom_commit_timeout: float = 30.0
    #: The compressed versions kept of each stored image (versions.py), by name and purpose.
    versions: tuple[VersionSpec, ...] = field(default_factory=lambda: DEFAULT_VERSIONS)
    #: Make every version of a newly registered DICOM image at once, in the background
    #: (False: each on its first request).
    make_versions: bool = False
    #: The cold storage tier: another directory or mount (tiers.py); None: hot only.
    cold_dir: Path | None = None
    #: Move originals and lossless versions of images older than this (seconds) to cold;
    #: None: no move by age.
    cold_after: float | None = None
    #: Move the images of studies in these reading statuses to cold.
    cold_statuses: tuple[str, ...] = ()
    #: "move": originals and lossless versions move to cold, lossy versions stay hot;
    #: "copy": every version is kept on both tiers (the cold copy written by the policy).
    cold_mode: str = "move"
    #: A read served from cold moves the image back to hot.
    recall_on_read: bool = False
    #: The reading statuses a study may have (studies.py); every study starts unread.
    statuses: tuple[str, ...] = DEFAULT_STATUSES
    #: Which versions a study in each status may serve; a status without a rule: every one.
    status_rules: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_RULES))
    #: Server processes on the one address (SO_REUSEPORT), sharing the data directory and
    #: the Dask cluster (front_ends.py); the first one runs the embedded cluster.
    processes: int = 1
    #: An extra process of a ``processes`` group: it binds the address its first process
    #: holds (SO_REUSEPORT) instead of requiring a free one (app.py).
    joins_group: bool = False
    #: This process's own folder under <data_dir>/spool ("": the folder itself).
    spool_name: str = ""
    #: The catalog (storage/db.py Database.open): "" for the data directory's SQLite file,
    #: "sqlite:PATH", or "postgresql://..." shared by the front ends of several hosts.
    catalog: str = ""
    #: PostgreSQL: how long a call waits for a catalog connection before UNAVAILABLE.
    catalog_timeout: float = 5.0
    #: Sweep the store's unfinished temporary files and unreferenced blobs at start
    #: (False for the extra processes of --processes, which start beside a serving one).
    sweep_store: bool = True
