"""The metrics endpoint of a real server: its counters equal the sums over the usage
records in the data directory's catalog."""

import json
import sqlite3
import urllib.request
from collections import Counter

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from medcompute.client import Client, ServiceError
from medcompute.server.config import ServerConfig
from medcompute.server.monitoring.metrics import Metrics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _scrape(port: int) -> dict[tuple[str, frozenset], float]:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _by(samples, name: str, *labels: str) -> dict[tuple, float]:
    return {tuple(dict(key)[label] for label in labels): value
            for (sample, key), value in samples.items() if sample == name}


def _usage_records(catalog_path) -> list[dict]:
    db = sqlite3.connect(f"file:{catalog_path}?mode=ro", uri=True)
    try:
        return [json.loads(row[0]) for row in db.execute("SELECT record FROM usage")]
    finally:
        db.close()


def _kind(record: dict) -> str:
    if not record["backend"]:
        return "none"
    return "cpu" if record["device"] == "cpu" else "gpu"


def test_the_endpoint_agrees_with_the_usage_records(tmp_path, server_thread):
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, workers=1, gpu_workers=0,
                          metrics_port=0)
    rng = np.random.default_rng(7)
    volume = rng.integers(0, 4000, size=(6, 24, 20)).astype(np.uint16)
    with server_thread(config) as server, Client(server.address, timeout=120) as client:
        running = server.running
        assert isinstance(running.metrics, Metrics) and running.metrics_port > 0
        results = [
            client.process(volume, ["gaussian:sigma=1"], device="cpu"),
            client.process(volume, ["mean:size=3", "edge", "mean:size=3"], device="cpu"),
            client.process(volume[0].astype(np.float32), ["mip:axis=0"], output_dtype="uint16"),
        ]
        # Refused after the job was created (the axis is checked against the image's
        # shape): a FAILED job with a usage record of its own.
        with pytest.raises(ServiceError) as info:
            client.process(np.ones((4, 4), np.float32), ["mip:axis=2"])
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        samples = _scrape(running.metrics_port)
        records = _usage_records(server.catalog.path)

    assert len(records) == 4
    assert {r["job_id"] for r in records} >= {r.job_id for r in results}
    assert Counter(r["state"] for r in records) == {"SUCCEEDED": 3, "FAILED": 1}

    jobs = Counter((_kind(r), r["state"].lower()) for r in records)
    assert jobs == {("cpu", "succeeded"): 3, ("none", "failed"): 1}
    assert _by(samples, "medcompute_jobs_total", "device", "outcome") == jobs

    operations = Counter((op, _kind(r), r["state"].lower())
                         for r in records for op in set(r["operations"]))
    assert _by(samples, "medcompute_operations_total", "operation", "device",
               "outcome") == operations
    assert operations["mean", "cpu", "succeeded"] == 1

    for key in ("images", "voxels", "bytes_in", "bytes_out"):
        assert samples["medcompute_" + key + "_total", frozenset()] == sum(
            int(r[key]) for r in records), key
    compute = sum(r["compute_seconds"] for r in records if _kind(r) == "cpu")
    assert samples["medcompute_compute_seconds_total",
                   frozenset({("device", "cpu")})] == pytest.approx(compute)
    assert _by(samples, "medcompute_job_duration_seconds_count", "device") == {
        ("cpu",): 3, ("none",): 1}
    assert samples["medcompute_platform_failures_total", frozenset()] == sum(
        r["platform_fault"] for r in records)
    assert samples["medcompute_fallbacks_total", frozenset()] == 0
    # No GPU worker ran anything: no GPU seconds were measured, so none are reported.
    assert ("medcompute_gpu_seconds_total", frozenset()) not in samples
    # Nothing is left in progress, and the health loop has counted the one CPU worker.
    assert samples["medcompute_queue_depth", frozenset()] == 0
    assert _by(samples, "medcompute_workers", "kind") == {("cpu",): 1, ("gpu",): 0}
    # Label values are operation names, device kinds and states only.
    assert not any("local" in dict(labels).values() for _, labels in samples)
