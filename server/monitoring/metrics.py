"""Prometheus metrics of one server: finished jobs, their usage, the queue, the workers
and the GPUs of the host.

Everything lives in the :class:`Metrics` object's own registry (never the process-wide
default one), so several servers in one process each expose only their own figures.

Where the figures come from:

* :meth:`Metrics.job_finished` takes each usage record as it is stored. The job and
  usage counters are sums over those records and nothing else, so at any scrape the
  counters equal the sums over the records stored until then. A record is applied under
  a lock that scrapes also take: a scrape never sees half a record.
* The queue depth is read at scrape time from a callable the server hands over once
  (:meth:`Metrics.set_queue_depth_source`), e.g. the guard's count of jobs in
  progress; without one the gauge is absent.
* The worker counts are pushed by the server's health loop (:meth:`Metrics.set_workers`).
* The GPUs are read through NVML at scrape time (:class:`GpuCollector`), only where NVML
  starts and reports at least one device.

Nothing is faked: a figure that was never measured is absent, not zero. The GPU families,
``medcompute_gpu_seconds_total`` and ``medcompute_energy_joules_total`` appear only once
there is something measured to report.

Label values come only from operation names, device kinds, job states and GPU indices;
never from subscribers, image ids or anything a caller sent as free text.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["Metrics", "GpuCollector", "device_kind", "DURATION_BUCKETS"]

log = logging.getLogger(__name__)

#: Seconds, from 1 ms to 10 min (job wall time and queue time).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 25.0, 60.0, 120.0, 300.0, 600.0)

#: Catalog calls: a read is well under a millisecond, a group commit an fsync or a
#: round trip to a database on another host.
CATALOG_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_DEVICES = ("cpu", "gpu", "none")
_STATES = ("succeeded", "failed", "cancelled")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def device_kind(usage: Mapping) -> str:
    """``"cpu"``, ``"gpu"`` or ``"none"`` (the job never ran) for a usage record.

    The record's ``device`` is a device's name (``"cpu"``, or a GPU model); only its
    kind becomes a label, so that the label has three values whatever the hardware.
    """
    backend = str(usage.get("backend") or "")
    device = str(usage.get("device") or "")
    if not backend and not device:
        return "none"
    if backend == "numpy" or device.lower() == "cpu":
        return "cpu"
    return "gpu"


def _operation(name: str) -> str:
    # Operation names are the pipeline's oneof field names; anything else is folded
    # into "other" so that no free text can become a label value.
    return name if _NAME.fullmatch(name) else "other"


def _outcome(state: str) -> str:
    state = state.lower()
    return state if state in _STATES else "other"


def _count(usage: Mapping, key: str) -> int:
    # uint64 fields arrive as ints from the catalog and as strings from a proto's JSON form.
    value = int(usage.get(key) or 0)
    if value < 0:
        raise ValueError(f"usage record {key}: expected >= 0, got {value}")
    return value


def _seconds(usage: Mapping, key: str) -> float | None:
    if usage.get(key) is None:
        return None
    value = float(usage[key])
    if not value >= 0.0:  # also refuses NaN
        raise ValueError(f"usage record {key}: expected a number >= 0, got {value}")
    return value


class Metrics:
    """The metrics of one server, in a registry of their own.

    Examples
    --------
    >>> metrics = Metrics(gpu=False)
    >>> metrics.job_finished({"operations": ["gaussian"], "bytes_in": 64, "bytes_out": 64,
    ...                       "wall_seconds": 0.2, "queue_seconds": 0.01,
    ...                       "compute_seconds": 0.1, "backend": "numpy", "device": "cpu",
    ...                       "state": "SUCCEEDED"})
    >>> metrics.registry.get_sample_value(
    ...     "medcompute_jobs_total", {"device": "cpu", "outcome": "succeeded"})
    1.0
    """

    def __init__(self, *, gpu: bool = True):
        """``gpu=False`` leaves NVML alone (no GPU families even on a GPU host)."""
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._queue_depth: Callable[[], int] | None = None
        self._storage: Callable[[], Mapping[str, tuple[int, int]]] | None = None
        self._reads: Callable[[], Mapping[str, int]] | None = None
        self._http = None
        self._http_thread: threading.Thread | None = None
        self._measured_gpu = False
        self._measured_energy = False

        # Not registered one by one: _UsageCollector exposes them under self._lock.
        self.jobs = Counter("medcompute_jobs_total", "Finished jobs (one per usage record).",
                            ["device", "outcome"], registry=None)
        self.operations = Counter(
            "medcompute_operations_total",
            "Finished jobs by operation; a job counts once under each operation it used.",
            ["operation", "device", "outcome"], registry=None)
        self.duration = Histogram(
            "medcompute_job_duration_seconds",
            "Wall time of finished jobs, from creation until the result was ready.",
            ["device"], buckets=DURATION_BUCKETS, registry=None)
        self.queue = Histogram(
            "medcompute_job_queue_seconds",
            "Time from a job's creation to the start of its task (jobs that ran).",
            ["device"], buckets=DURATION_BUCKETS, registry=None)
        self.images = Counter("medcompute_images_total", "Images received by finished jobs.",
                              registry=None)
        self.voxels = Counter("medcompute_voxels_total", "Voxels processed by finished jobs.",
                              registry=None)
        self.bytes_in = Counter("medcompute_bytes_in_total",
                                "Image bytes received by finished jobs.", registry=None)
        self.bytes_out = Counter("medcompute_bytes_out_total",
                                 "Result bytes produced by finished jobs.", registry=None)
        self.compute = Counter("medcompute_compute_seconds_total",
                               "Seconds measured on the workers around the kernels.",
                               ["device"], registry=None)
        self.gpu_seconds = Counter("medcompute_gpu_seconds_total",
                                   "GPU seconds measured on GPU workers.", registry=None)
        self.energy = Counter("medcompute_energy_joules_total",
                              "GPU energy measured through NVML around the jobs' kernels.",
                              registry=None)
        self.fallbacks = Counter("medcompute_fallbacks_total",
                                 "Jobs that ran on CPU after the GPU failed or was missing.",
                                 registry=None)
        self.platform_failures = Counter(
            "medcompute_platform_failures_total",
            "Jobs that failed through the service's fault (never charged).", registry=None)
        self.workers = Gauge("medcompute_workers", "Dask workers alive, by kind.", ["kind"],
                             registry=None)
        self.catalog_seconds = Histogram(
            "medcompute_catalog_call_seconds",
            "Catalog calls (a read, or a group commit of writes), from asking for a "
            "connection to its end, by backend.", ["backend"], buckets=CATALOG_BUCKETS,
            registry=None)
        self._catalog: tuple[str, Callable[[], Mapping[str, int]]] | None = None
        self.registry.register(_UsageCollector(self))

        self.gpus = GpuCollector.open() if gpu else None
        if self.gpus is not None:
            self.registry.register(self.gpus)

    # -- feeding -----------------------------------------------------------------
    def job_finished(self, usage: Mapping) -> None:
        """Count one finished job from its usage record (the UsageRecord message's fields).

        Call it once per stored record. A record with a negative or NaN figure is refused
        with ``ValueError`` before anything is counted.
        """
        device = device_kind(usage)
        outcome = _outcome(str(usage.get("state") or ""))
        operations = dict.fromkeys(_operation(str(op)) for op in usage.get("operations") or ())
        counts = {key: _count(usage, key)
                  for key in ("images", "voxels", "bytes_in", "bytes_out")}
        wall = _seconds(usage, "wall_seconds") or 0.0
        queue = _seconds(usage, "queue_seconds") or 0.0
        compute = _seconds(usage, "compute_seconds") or 0.0
        gpu_seconds = _seconds(usage, "gpu_seconds")
        energy = _seconds(usage, "energy_joules")
        with self._lock:
            self.jobs.labels(device, outcome).inc()
            for op in operations:
                self.operations.labels(op, device, outcome).inc()
            self.duration.labels(device).observe(wall)
            if device != "none":
                # A job that never ran has no queue time (the record's 0 is not a measurement).
                self.queue.labels(device).observe(queue)
            self.images.inc(counts["images"])
            self.voxels.inc(counts["voxels"])
            self.bytes_in.inc(counts["bytes_in"])
            self.bytes_out.inc(counts["bytes_out"])
            self.compute.labels(device).inc(compute)
            if gpu_seconds is not None:
                self.gpu_seconds.inc(gpu_seconds)
                self._measured_gpu = True
            if energy is not None:
                self.energy.inc(energy)
                self._measured_energy = True
            if usage.get("fallback"):
                self.fallbacks.inc()
            if usage.get("platform_fault"):
                self.platform_failures.inc()

    def set_catalog(self, backend: str, stats: Callable[[], Mapping[str, int]]) -> None:
        """Expose the catalog: ``medcompute_catalog_info{backend}`` and, read from
        ``stats()`` at each scrape (``{size, available, waiting, max}``), its connections
        ``medcompute_catalog_connections{state="open"|"idle"|"max"}`` and the calls
        waiting for one, ``medcompute_catalog_waiting``."""
        with self._lock:
            self._catalog = (backend, stats)
            self.catalog_seconds.labels(backend)

    def catalog_call(self, seconds: float) -> None:
        """Count one catalog call that took ``seconds`` (the backend's latency hook)."""
        with self._lock:
            if self._catalog is not None:
                self.catalog_seconds.labels(self._catalog[0]).observe(seconds)

    def set_queue_depth_source(self, source: Callable[[], int] | None) -> None:
        """Read ``medcompute_queue_depth`` from ``source()`` at each scrape.

        ``source`` returns the number of jobs queued or running on this server; it is
        called from the scrape's thread, so it must only read (an int attribute such as
        the guard's jobs-in-progress count is fine). ``None`` removes the gauge.
        """
        with self._lock:
            self._queue_depth = source

    def set_storage_source(self, source: Callable[[], Mapping[str, tuple[int, int]]] | None
                           ) -> None:
        """Read ``medcompute_storage_free_bytes{location}`` and
        ``medcompute_storage_reserved_bytes{location}`` from ``source()`` at each scrape:
        ``{location: (free bytes, reserved bytes)}`` (``FreeSpaceReserve.status``)."""
        with self._lock:
            self._storage = source

    def set_reads_source(self, source: Callable[[], Mapping[str, int]] | None) -> None:
        """Read ``medcompute_store_reads_total{tier}`` from ``source()`` at each scrape:
        ``{tier: reads of stored image data served from it}`` (``TierMover.reads``)."""
        with self._lock:
            self._reads = source

    def set_workers(self, cpu: int, gpu: int) -> None:
        """Record the Dask workers alive: ``medcompute_workers{kind="cpu"|"gpu"}``."""
        for name, value in (("cpu", cpu), ("gpu", gpu)):
            if int(value) != value or value < 0:
                raise ValueError(f"{name}: expected a whole number >= 0, got {value!r}")
        with self._lock:
            self.workers.labels("cpu").set(cpu)
            self.workers.labels("gpu").set(gpu)

    # -- exposing ----------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition of every metric, as a scrape would get it."""
        return generate_latest(self.registry)

    def start_http(self, address: str = "127.0.0.1", port: int = 0) -> int:
        """Serve ``/metrics`` over HTTP in a background thread; return the bound port.

        Port 0 picks a free port. The endpoint has no authentication: keep it on a
        loopback or otherwise private address.
        """
        if self._http is not None:
            raise RuntimeError("the metrics endpoint is already running; stop() it first")
        self._http, self._http_thread = start_http_server(port, addr=address,
                                                          registry=self.registry)
        bound = int(self._http.server_address[1])
        log.info("metrics on http://%s:%d/metrics", address, bound)
        return bound

    def stop(self) -> None:
        """Stop the HTTP endpoint (if started) and release NVML; safe to call twice.

        :meth:`render` still works afterwards, without the GPU families.
        """
        http, thread = self._http, self._http_thread
        self._http = self._http_thread = None
        if http is not None:
            http.shutdown()
            http.server_close()
        if thread is not None:
            thread.join(timeout=5)
        gpus, self.gpus = self.gpus, None
        if gpus is not None:
            self.registry.unregister(gpus)
            gpus.close()

    # -- collection (called by _UsageCollector) ----------------------------------------
    def _collect(self) -> list[Metric]:
        with self._lock:
            families = [*self.jobs.collect(), *self.operations.collect(),
                        *self.duration.collect(), *self.queue.collect(),
                        *self.images.collect(), *self.voxels.collect(),
                        *self.bytes_in.collect(), *self.bytes_out.collect(),
                        *self.compute.collect(), *self.fallbacks.collect(),
                        *self.platform_failures.collect(), *self.workers.collect(),
                        *self.catalog_seconds.collect()]
            if self._measured_gpu:
                families += self.gpu_seconds.collect()
            if self._measured_energy:
                families += self.energy.collect()
            source = self._queue_depth
            storage = self._storage
            reads = self._reads
            catalog = self._catalog
        for family in families:
            # The client library adds a "<name>_created" timestamp series to every counter
            # and histogram; it doubles the series and says nothing a scrape needs here.
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
        if storage is not None:
            families += _storage_families(storage)
        if reads is not None:
            families += _reads_family(reads)
        if catalog is not None:
            families += _catalog_families(*catalog)
        if source is not None:
            try:
                depth = int(source())
            except Exception:  # a broken source drops the sample, not the scrape
                log.exception("could not read the queue depth for the metrics")
            else:
                family = GaugeMetricFamily("medcompute_queue_depth",
                                           "Jobs queued or running on this server.")
                family.add_metric([], depth)
                families.append(family)
        return families


def _catalog_families(backend: str, stats) -> list[Metric]:
    info = GaugeMetricFamily("medcompute_catalog_info", "The catalog's backend (always 1).",
                             labels=["backend"])
    info.add_metric([backend], 1)
    try:
        now = dict(stats())
    except Exception:  # a broken source drops the samples, not the scrape
        log.exception("could not read the catalog's connections for the metrics")
        return [info]
    conns = GaugeMetricFamily("medcompute_catalog_connections",
                              "The catalog's connections: open, idle (open, not lent), max.",
                              labels=["backend", "state"])
    for state, key in (("open", "size"), ("idle", "available"), ("max", "max")):
        conns.add_metric([backend, state], int(now.get(key, 0)))
    waiting = GaugeMetricFamily("medcompute_catalog_waiting",
                                "Calls waiting for a catalog connection.", labels=["backend"])
    waiting.add_metric([backend], int(now.get("waiting", 0)))
    return [info, conns, waiting]


def _reads_family(source) -> list[Metric]:
    try:
        counts = dict(source())
    except Exception:  # a broken source drops the samples, not the scrape
        log.exception("could not read the store's reads per tier for the metrics")
        return []
    family = CounterMetricFamily("medcompute_store_reads",
                                 "Reads of stored image data (Get), by the tier served from.",
                                 labels=["tier"])
    for tier, n in sorted(counts.items()):
        family.add_metric([tier], n)
    return [family]


def _storage_families(source) -> list[Metric]:
    try:
        status = dict(source())
    except Exception:  # an unreadable filesystem drops the samples, not the scrape
        log.exception("could not read the storage's free space for the metrics")
        return []
    free = GaugeMetricFamily("medcompute_storage_free_bytes",
                             "Bytes free at each storage location of the data directory.",
                             labels=["location"])
    reserved = GaugeMetricFamily(
        "medcompute_storage_reserved_bytes",
        "Free-space reserve of each storage location (--min-free): below it, writes are "
        "refused.", labels=["location"])
    for location, (free_bytes, reserved_bytes) in sorted(status.items()):
        free.add_metric([location], free_bytes)
        reserved.add_metric([location], reserved_bytes)
    return [free, reserved]


class _UsageCollector:
    """Exposes a :class:`Metrics` object's own metrics, read under its lock."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics._collect())


class GpuCollector:
    """Per GPU (label ``gpu``: the NVML index), read through NVML at each scrape:
    utilisation, memory used and total, and the energy used since the driver loaded.

    NVML sees every GPU of the host, whatever ``CUDA_VISIBLE_DEVICES`` says. A reading
    that NVML refuses (a GPU without an energy counter, a device that fell off the bus)
    is left out of that scrape; a family with no reading is left out entirely.
    """

    def __init__(self, nvml, count: int):
        self._nvml = nvml
        self.count = count
        self._closed = False

    @classmethod
    def open(cls, nvml=None) -> GpuCollector | None:
        """A collector when NVML starts and reports at least one GPU, else ``None``.

        ``nvml`` is the NVML binding (``pynvml`` from nvidia-ml-py unless given).
        """
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError:
                return None
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:  # no driver, no library: no GPU figures
            log.debug("NVML is not available (%s): no GPU metrics", exc)
            return None
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError:
            count = 0
        if count <= 0:
            nvml.nvmlShutdown()
            return None
        return cls(nvml, count)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass

    def _read(self, fn, *args):
        try:
            return fn(*args)
        except self._nvml.NVMLError:
            return None

    def collect(self) -> Iterator[Metric]:
        nvml = self._nvml
        utilization = GaugeMetricFamily("medcompute_gpu_utilization_percent",
                                        "Percent of the last sample period a kernel ran.",
                                        labels=["gpu"])
        used = GaugeMetricFamily("medcompute_gpu_memory_used_bytes",
                                 "GPU memory in use (all processes).", labels=["gpu"])
        total = GaugeMetricFamily("medcompute_gpu_memory_total_bytes",
                                  "GPU memory installed.", labels=["gpu"])
        energy = CounterMetricFamily("medcompute_gpu_energy_joules",
                                     "Energy the GPU used since the driver loaded.",
                                     labels=["gpu"])
        if not self._closed:
            for index in range(self.count):
                handle = self._read(nvml.nvmlDeviceGetHandleByIndex, index)
                if handle is None:
                    continue
                label = [str(index)]
                rates = self._read(nvml.nvmlDeviceGetUtilizationRates, handle)
                if rates is not None:
                    utilization.add_metric(label, float(rates.gpu))
                memory = self._read(nvml.nvmlDeviceGetMemoryInfo, handle)
                if memory is not None:
                    used.add_metric(label, float(memory.used))
                    total.add_metric(label, float(memory.total))
                millijoules = self._read(nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
                if millijoules is not None:
                    energy.add_metric(label, millijoules / 1000.0)
        return iter([f for f in (utilization, used, total, energy) if f.samples])
