"""Prometheus metrics: the counters are the sums of the usage records fed to them, GPU
figures appear only where measured, and the HTTP endpoint binds and frees its port."""

import math
import socket
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from medcompute.server.monitoring.metrics import (
    DURATION_BUCKETS,
    GpuCollector,
    Metrics,
    device_kind,
)

pytestmark = pytest.mark.timeout(30)


def _usage(**fields):
    record = {
        "job_id": "job-1", "subscriber": "local", "operations": ["gaussian"], "images": 1,
        "voxels": 1000, "bytes_in": 2000, "bytes_out": 4000, "queue_seconds": 0.01,
        "compute_seconds": 0.05, "wall_seconds": 0.2, "backend": "numpy", "device": "cpu",
        "fallback": False, "state": "SUCCEEDED", "created_at": 100.0, "finished_at": 100.2,
        "platform_fault": False, "destination": "",
    }
    record.update(fields)
    return record


RECORDS = [
    _usage(),
    _usage(job_id="job-2", operations=["mean", "edge", "mean"], voxels=8000, bytes_in=16000,
           bytes_out=32000, compute_seconds=0.4, wall_seconds=1.5, queue_seconds=0.3),
    _usage(job_id="job-3", operations=["gaussian", "laplacian"], backend="cupy",
           device="NVIDIA H200", compute_seconds=0.02, gpu_seconds=0.02, energy_joules=3.5,
           wall_seconds=0.1, queue_seconds=0.002),
    _usage(job_id="job-4", operations=["bandpass"], backend="cupy", device="NVIDIA H200",
           compute_seconds=0.03, wall_seconds=0.09, queue_seconds=0.004),  # nothing measured
    _usage(job_id="job-5", operations=["project"], fallback=True, compute_seconds=0.7,
           wall_seconds=2.0, queue_seconds=0.5, gpu_seconds=0.25),
    # Failed before it ran: no backend, nothing computed, the platform's fault.
    _usage(job_id="job-6", operations=["gaussian", "subtract"], images=2, voxels=0,
           bytes_in=512, bytes_out=0, queue_seconds=0.0, compute_seconds=0.0,
           wall_seconds=0.03, backend="", device="", state="FAILED", platform_fault=True),
    # Failed through the caller's fault, after the upload.
    _usage(job_id="job-7", operations=["mip"], voxels=0, bytes_in=4096, bytes_out=0,
           queue_seconds=0.0, compute_seconds=0.0, wall_seconds=0.01, backend="", device="",
           state="FAILED"),
    _usage(job_id="job-8", operations=["median"], bytes_out=0, state="CANCELLED",
           backend="", device="", compute_seconds=0.0, wall_seconds=4.0, queue_seconds=0.0),
]


def _fed(records=RECORDS) -> Metrics:
    metrics = Metrics(gpu=False)
    for record in records:
        metrics.job_finished(record)
    return metrics


def _samples(text: bytes) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, keyed by name and labels."""
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[s.name, frozenset(s.labels.items())] = s.value
    return out


def _value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def test_device_kind():
    assert device_kind({"backend": "numpy", "device": "cpu"}) == "cpu"
    assert device_kind({"backend": "cupy", "device": "NVIDIA H200"}) == "gpu"
    assert device_kind({"backend": "fake-gpu", "device": "FakeGPU (NumPy test double)"}) == "gpu"
    assert device_kind({"backend": "", "device": ""}) == "none"
    assert device_kind({}) == "none"


def test_job_counters_equal_the_sums_over_the_records():
    samples = _samples(_fed().render())
    jobs = {}
    ops = {}
    for r in RECORDS:
        device = device_kind(r)
        outcome = r["state"].lower()
        jobs[device, outcome] = jobs.get((device, outcome), 0) + 1
        for op in set(r["operations"]):
            ops[op, device, outcome] = ops.get((op, device, outcome), 0) + 1
    # Hand-checked: 5 ran (3 CPU, 2 GPU) and succeeded; 2 failed and 1 was cancelled unrun.
    assert jobs == {("cpu", "succeeded"): 3, ("gpu", "succeeded"): 2, ("none", "failed"): 2,
                    ("none", "cancelled"): 1}
    exposed = {(dict(labels)["device"], dict(labels)["outcome"]): value
               for (name, labels), value in samples.items() if name == "medcompute_jobs_total"}
    assert exposed == jobs
    exposed_ops = {(dict(labels)["operation"], dict(labels)["device"],
                    dict(labels)["outcome"]): value
                   for (name, labels), value in samples.items()
                   if name == "medcompute_operations_total"}
    assert exposed_ops == ops
    # A pipeline that uses an operation twice counts once under it.
    assert _value(samples, "medcompute_operations_total", operation="mean", device="cpu",
                  outcome="succeeded") == 1


def test_usage_counters_equal_the_sums_over_the_records():
    samples = _samples(_fed().render())
    for key in ("images", "voxels", "bytes_in", "bytes_out"):
        assert _value(samples, f"medcompute_{key}_total") == sum(r[key] for r in RECORDS), key
    assert _value(samples, "medcompute_bytes_in_total") == 2000 * 5 + 16000 + 512 + 4096
    for device in ("cpu", "gpu", "none"):
        expected = math.fsum(r["compute_seconds"] for r in RECORDS if device_kind(r) == device)
        assert _value(samples, "medcompute_compute_seconds_total",
                      device=device) == pytest.approx(expected, abs=1e-12)
    # Only the two measured values: job-4 ran on a GPU but measured nothing.
    assert _value(samples, "medcompute_gpu_seconds_total") == pytest.approx(0.02 + 0.25)
    assert _value(samples, "medcompute_energy_joules_total") == pytest.approx(3.5)
    assert _value(samples, "medcompute_fallbacks_total") == 1
    assert _value(samples, "medcompute_platform_failures_total") == 1


def test_duration_and_queue_histograms():
    metrics = _fed()
    samples = _samples(metrics.render())
    for device in ("cpu", "gpu", "none"):
        mine = [r for r in RECORDS if device_kind(r) == device]
        assert _value(samples, "medcompute_job_duration_seconds_count",
                      device=device) == len(mine)
        assert _value(samples, "medcompute_job_duration_seconds_sum",
                      device=device) == pytest.approx(math.fsum(r["wall_seconds"] for r in mine))
        within_a_second = sum(r["wall_seconds"] <= 1.0 for r in mine)
        assert _value(samples, "medcompute_job_duration_seconds_bucket", device=device,
                      le="1.0") == within_a_second
    # Jobs that never ran have no queue time to observe.
    assert _value(samples, "medcompute_job_queue_seconds_count", device="none") is None
    assert _value(samples, "medcompute_job_queue_seconds_count", device="cpu") == 3
    assert _value(samples, "medcompute_job_queue_seconds_sum",
                  device="cpu") == pytest.approx(0.01 + 0.3 + 0.5)
    assert DURATION_BUCKETS[0] == 0.001 and DURATION_BUCKETS[-1] == 600.0


def test_counters_grow_with_each_record():
    metrics = Metrics(gpu=False)
    for n, record in enumerate(RECORDS, 1):
        metrics.job_finished(record)
        value = metrics.registry.get_sample_value
        assert value("medcompute_bytes_out_total") == sum(r["bytes_out"] for r in RECORDS[:n])
        total = sum(value("medcompute_jobs_total", {"device": d, "outcome": o}) or 0
                    for d in ("cpu", "gpu", "none")
                    for o in ("succeeded", "failed", "cancelled"))
        assert total == n


def test_fields_as_a_proto_json_form_gives_them():
    # MessageToDict writes uint64 fields as strings and leaves out zero values.
    metrics = Metrics(gpu=False)
    metrics.job_finished({"operations": ["edge"], "images": 1, "voxels": "64",
                          "bytes_in": "256", "bytes_out": "256", "wall_seconds": 0.1,
                          "backend": "numpy", "device": "cpu", "state": "SUCCEEDED"})
    value = metrics.registry.get_sample_value
    assert value("medcompute_bytes_in_total") == 256 and value("medcompute_voxels_total") == 64
    assert value("medcompute_compute_seconds_total", {"device": "cpu"}) == 0


@pytest.mark.parametrize("field, bad", [("bytes_in", -1), ("wall_seconds", float("nan")),
                                        ("gpu_seconds", -0.5)])
def test_a_bad_record_is_refused_before_anything_is_counted(field, bad):
    metrics = Metrics(gpu=False)
    with pytest.raises(ValueError, match=field):
        metrics.job_finished(_usage(**{field: bad}))
    assert metrics.registry.get_sample_value(
        "medcompute_jobs_total", {"device": "cpu", "outcome": "succeeded"}) is None
    assert metrics.registry.get_sample_value("medcompute_bytes_in_total") == 0


def test_labels_carry_no_caller_text():
    metrics = Metrics(gpu=False)
    metrics.job_finished(_usage(subscriber="PATIENT^JANE", job_id="1.2.840.99.7",
                                destination="radiology-ward-3",
                                operations=["gaussian", "Jane Doe 1970-01-01"],
                                device="GPU of PATIENT^JANE", backend="cupy"))
    text = metrics.render().decode()
    for secret in ("PATIENT", "JANE", "Jane", "1.2.840.99.7", "radiology", "1970"):
        assert secret not in text
    assert _value(_samples(metrics.render()), "medcompute_operations_total", operation="other",
                  device="gpu", outcome="succeeded") == 1


def test_unmeasured_figures_are_absent_not_zero():
    text = Metrics(gpu=False).render().decode()
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert "medcompute_bytes_in_total" in names
    assert not any(name.endswith("_created") for name in names)
    for absent in ("medcompute_gpu_seconds_total", "medcompute_energy_joules_total",
                   "medcompute_queue_depth", "medcompute_workers"):
        assert absent not in names
    # CPU jobs alone measure no GPU time: still absent.
    text = _fed(RECORDS[:2]).render().decode()
    assert "medcompute_gpu_seconds_total" not in text


def _nvml_gpus() -> int:
    """GPUs NVML reports on this machine (0 without a driver or library)."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    try:
        return pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()


def test_gpu_families_follow_what_nvml_reports():
    gpus = _nvml_gpus()
    metrics = Metrics()
    try:
        samples = _samples(metrics.render())
        gpu_samples = [key for key in samples if key[0].startswith("medcompute_gpu_")]
        if gpus == 0:
            # No NVML (no driver, or no GPU): a figure that cannot be measured is absent,
            # never reported as zero, so not one medcompute_gpu_ sample may appear.
            assert metrics.gpus is None and gpu_samples == []
        else:
            assert metrics.gpus is not None and metrics.gpus.count == gpus
            for index in range(gpus):
                total = _value(samples, "medcompute_gpu_memory_total_bytes", gpu=str(index))
                assert total is not None and total > 0
    finally:
        metrics.stop()
    assert not any(n.startswith("medcompute_gpu_") for n, _ in _samples(metrics.render()))


class _NVMLError(Exception):
    pass


class _StandInNVML:
    """The part of the NVML binding the collector uses, with readings chosen by the test."""

    NVMLError = _NVMLError

    def __init__(self, count=2, init_error=False, failing=()):
        self.count, self.init_error, self.failing = count, init_error, set(failing)
        self.initialised = 0

    def _check(self, what, index):
        if (what, index) in self.failing:
            raise _NVMLError(f"{what} not supported on {index}")

    def nvmlInit(self):
        if self.init_error:
            raise _NVMLError("library not found")
        self.initialised += 1

    def nvmlShutdown(self):
        self.initialised -= 1

    def nvmlDeviceGetCount(self):
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index):
        self._check("handle", index)
        return index

    def nvmlDeviceGetUtilizationRates(self, handle):
        self._check("utilization", handle)
        return SimpleNamespace(gpu=40 + handle, memory=5)

    def nvmlDeviceGetMemoryInfo(self, handle):
        self._check("memory", handle)
        return SimpleNamespace(used=(1 + handle) << 30, total=80 << 30, free=0)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self._check("energy", handle)
        return 123_456 + handle  # millijoules


def _collect(collector):
    return {(s.name, s.labels.get("gpu")): s.value
            for family in collector.collect() for s in family.samples}


def test_gpu_collector_reads_each_device_in_si_units():
    nvml = _StandInNVML(count=2)
    collector = GpuCollector.open(nvml)
    samples = _collect(collector)
    assert samples[("medcompute_gpu_utilization_percent", "1")] == 41
    assert samples[("medcompute_gpu_memory_used_bytes", "0")] == 1 << 30
    assert samples[("medcompute_gpu_memory_total_bytes", "1")] == 80 << 30
    assert samples[("medcompute_gpu_energy_joules_total", "0")] == pytest.approx(123.456)
    collector.close()
    collector.close()
    assert nvml.initialised == 0 and _collect(collector) == {}


def test_an_nvml_error_drops_that_reading_not_the_scrape():
    nvml = _StandInNVML(count=3, failing={("energy", 0), ("energy", 1), ("energy", 2),
                                          ("handle", 1), ("memory", 2)})
    samples = _collect(GpuCollector.open(nvml))
    assert set(samples) == {
        ("medcompute_gpu_utilization_percent", "0"), ("medcompute_gpu_memory_used_bytes", "0"),
        ("medcompute_gpu_memory_total_bytes", "0"), ("medcompute_gpu_utilization_percent", "2"),
    }


def test_no_collector_without_nvml_or_devices():
    assert GpuCollector.open(_StandInNVML(init_error=True)) is None
    none = _StandInNVML(count=0)
    assert GpuCollector.open(none) is None and none.initialised == 0


def test_queue_depth_is_read_at_each_scrape():
    metrics = Metrics(gpu=False)
    depth = [3]
    metrics.set_queue_depth_source(lambda: depth[0])
    assert metrics.registry.get_sample_value("medcompute_queue_depth") == 3
    depth[0] = 0
    assert metrics.registry.get_sample_value("medcompute_queue_depth") == 0
    metrics.set_queue_depth_source(None)
    assert metrics.registry.get_sample_value("medcompute_queue_depth") is None


def test_a_failing_queue_depth_source_drops_only_that_sample(caplog):
    metrics = _fed(RECORDS[:1])

    def broken():
        raise RuntimeError("gone")

    metrics.set_queue_depth_source(broken)
    samples = _samples(metrics.render())
    assert _value(samples, "medcompute_queue_depth") is None
    assert _value(samples, "medcompute_jobs_total", device="cpu", outcome="succeeded") == 1
    assert "queue depth" in caplog.text


def test_workers_gauge():
    metrics = Metrics(gpu=False)
    metrics.set_workers(cpu=4, gpu=1)
    metrics.set_workers(cpu=3, gpu=1)
    value = metrics.registry.get_sample_value
    assert value("medcompute_workers", {"kind": "cpu"}) == 3
    assert value("medcompute_workers", {"kind": "gpu"}) == 1
    with pytest.raises(ValueError, match="gpu"):
        metrics.set_workers(cpu=1, gpu=-1)
    with pytest.raises(ValueError, match="cpu"):
        metrics.set_workers(cpu=1.5, gpu=0)


def test_each_metrics_object_has_its_own_registry():
    a, b = _fed(RECORDS[:2]), Metrics(gpu=False)
    b.job_finished(RECORDS[0])
    assert a.registry.get_sample_value("medcompute_bytes_in_total") == 18000
    assert b.registry.get_sample_value("medcompute_bytes_in_total") == 2000


def _scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read()


def test_http_endpoint_serves_the_registry_and_stop_frees_the_port():
    metrics = _fed()
    port = metrics.start_http("127.0.0.1", 0)
    try:
        assert port > 0
        with pytest.raises(RuntimeError, match="already running"):
            metrics.start_http("127.0.0.1", 0)
        scraped = _samples(_scrape(port))
        assert scraped == _samples(metrics.render())
        assert _value(scraped, "medcompute_jobs_total", device="gpu", outcome="succeeded") == 2
        metrics.job_finished(RECORDS[0])
        assert _value(_samples(_scrape(port)), "medcompute_jobs_total", device="cpu",
                      outcome="succeeded") == 4
    finally:
        metrics.stop()
    metrics.stop()  # twice is harmless
    with pytest.raises(urllib.error.URLError):
        _scrape(port)
    # Nothing listens on the port any more: another socket can listen there.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_store_reads_per_tier_follow_their_source():
    metrics = Metrics(gpu=False)
    assert "medcompute_store_reads" not in metrics.render().decode()
    reads = {"hot": 2, "cold": 0}
    metrics.set_reads_source(lambda: reads)
    reads["cold"] = 1
    samples = _samples(metrics.render())
    assert _value(samples, "medcompute_store_reads_total", tier="hot") == 2
    assert _value(samples, "medcompute_store_reads_total", tier="cold") == 1

    def broken():
        raise OSError("gone")
    metrics.set_reads_source(broken)
    assert "medcompute_store_reads" not in metrics.render().decode()   # the scrape works


def test_the_catalogs_backend_connections_and_call_latency_are_exposed(tmp_path):
    from medcompute.server.storage.db import Database

    metrics = Metrics()
    db = Database(tmp_path)
    try:
        metrics.set_catalog(db.kind, db.backend.stats)
        db.backend.latency = metrics.catalog_call
        db.run(lambda tx: tx.execute("SELECT 1").fetchone())
        text = metrics.render().decode()
        assert 'medcompute_catalog_info{backend="sqlite"} 1.0' in text
        assert 'medcompute_catalog_connections{backend="sqlite",state="open"} 1.0' in text
        assert 'medcompute_catalog_waiting{backend="sqlite"} 0.0' in text
        assert 'medcompute_catalog_call_seconds_count{backend="sqlite"} 1.0' in text
    finally:
        db.close()
        metrics.stop()


def test_a_postgresql_catalogs_pool_is_exposed(postgres):
    from medcompute.server.storage.db import Database

    metrics = Metrics()
    db = Database(url=postgres.fresh_url())
    try:
        metrics.set_catalog(db.kind, db.backend.stats)
        db.backend.latency = metrics.catalog_call
        for _ in range(3):
            db.run(lambda tx: tx.execute("SELECT 1").fetchone())
        text = metrics.render().decode()
        assert 'medcompute_catalog_info{backend="postgresql"} 1.0' in text
        assert 'medcompute_catalog_connections{backend="postgresql",state="max"} 8.0' in text
        assert 'medcompute_catalog_call_seconds_count{backend="postgresql"} 3.0' in text
    finally:
        db.close()
        metrics.stop()
