"""The audit log records every call that touches an image, a job, a key or usage (failures
too), and no patient name or id appears in any log line, error message or audit entry."""

import csv
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import grpc
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medcompute.client import Client, ServiceError
from medcompute.server.config import ServerConfig
from medcompute.server.storage.keys import KeyStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NAME, PID = "SENTINELNAME^PHI", "SENTINELPID8841"


def _phi_dicom(tmp_path: Path) -> tuple[Path, Path]:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID = NAME, PID
    good = tmp_path / "phi.dcm"
    ds.save_as(good)
    broken = tmp_path / "phi_broken.dcm"
    broken.write_bytes(good.read_bytes()[:-5000])
    return good, broken


def test_audit_and_no_phi_anywhere(tmp_path, server_thread, caplog):
    keys = KeyStore(tmp_path / "data")
    _, token = keys.create("hospital-a", "process,store,receive")
    _, admin = keys.create("operator", "admin")
    keys.close()
    good, broken = _phi_dicom(tmp_path)
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path / "data", workers=1,
                          gpu_workers=0, require_keys=True)
    errors = []
    with caplog.at_level(logging.DEBUG), server_thread(config) as server:
        with Client(server.address, api_key=token, timeout=60) as c:
            stored = c.store.register(good)
            image_id = stored.image_id
            r = c.process(f"id:{image_id}", ["gaussian:sigma_mm=1"], output="dicom_file")
            c.store.get(image_id)
            for bad in (lambda: c.process(broken, ["gaussian:sigma=1"]),
                        lambda: c.store.register(broken),
                        lambda: c.process(good, ["gaussian:sigma=-1"]),
                        lambda: c.store.get("f" * 32)):
                with pytest.raises(ServiceError) as info:
                    bad()
                errors.append(info.value.details)
        with Client(server.address, timeout=60) as anonymous, pytest.raises(ServiceError):
            anonymous.process(good, ["gaussian:sigma=1"])

        async def worker_logs():
            return await server.running.dispatcher.client.get_worker_logs(n=1000)

        worker_lines = json.dumps(server.call(worker_logs()))
        with Client(server.address, api_key=admin, timeout=60) as c:
            entries = c.audit(limit=1000)

    actions = [(e.subscriber, e.action, e.outcome) for e in entries]
    assert ("hospital-a", "store.register", "OK") in actions
    assert ("hospital-a", "process", "OK") in actions
    assert ("hospital-a", "store.get", "OK") in actions
    assert ("hospital-a", "process", "INVALID_ARGUMENT") in actions
    assert ("hospital-a", "store.get", "NOT_FOUND") in actions
    assert ("", "process", "UNAUTHENTICATED") in actions
    by_object = {e.object_id for e in entries}
    assert image_id in by_object and r.job_id in by_object

    # The audit log, exported by the command line from the data directory.
    export = subprocess.run(
        [str(Path(sys.executable).parent / "medcompute"), "audit", "--data-dir",
         str(tmp_path / "data"), "--format", "csv"], capture_output=True, text=True, check=True)
    rows = list(csv.DictReader(io.StringIO(export.stdout)))
    # ... everything listed above, and then that listing itself.
    assert len(rows) == len(entries) + 1
    assert (rows[-1]["subscriber"], rows[-1]["action"]) == ("operator", "audit.list")

    everything = "\n".join([caplog.text, worker_lines, export.stdout, export.stderr, *errors,
                            *(f"{e.detail} {e.object_id}" for e in entries)])
    for sentinel in (NAME, PID, "SENTINELNAME", "SENTINELPID"):
        assert sentinel not in everything
    assert grpc.StatusCode.INVALID_ARGUMENT.name in everything  # the search had material


def test_a_flood_of_unauthenticated_calls_is_summarised_not_written_row_by_row(
        tmp_path, server_thread):
    from medcompute.proto.v1 import jobs_pb2, jobs_pb2_grpc
    from medcompute.server.storage.audit import REFUSED_ACTION, REFUSED_ENTRIES, AuditLog

    keys = KeyStore(tmp_path / "data")
    _, reader = keys.create("hospital-a", "receive")
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path / "data", workers=1,
                          gpu_workers=0, require_keys=True)
    flood = 5 * REFUSED_ENTRIES
    with server_thread(config) as server, grpc.insecure_channel(server.address) as channel:
        jobs = jobs_pb2_grpc.JobsServiceStub(channel)
        for i in range(flood):
            metadata = [("authorization", "Bearer not-a-key")] if i % 2 else None
            with pytest.raises(grpc.RpcError) as info:
                jobs.GetJob(jobs_pb2.GetJobRequest(job_id="f" * 32), metadata=metadata,
                            timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # A caller with a key keeps an entry for each refusal.
        for _ in range(REFUSED_ENTRIES + 2):
            with pytest.raises(grpc.RpcError) as info:
                jobs.GetJob(jobs_pb2.GetJobRequest(job_id="f" * 32),
                            metadata=[("authorization", f"Bearer {reader}")], timeout=30)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    log = AuditLog(tmp_path / "data")
    try:
        entries = log.list(limit=1000)
    finally:
        log.close()
    refused = [e for e in entries if e.outcome == "UNAUTHENTICATED"]
    own = [e for e in refused if e.action == "jobs.get"]
    [summary] = [e for e in refused if e.action == REFUSED_ACTION]
    assert len(own) == REFUSED_ENTRIES
    assert summary.object_id == "127.0.0.1"
    assert summary.detail.startswith(f"{flood} refused unauthenticated calls from 127.0.0.1")
    denied = [e for e in entries if e.outcome == "PERMISSION_DENIED"]
    assert len(denied) == REFUSED_ENTRIES + 2
    assert {e.subscriber for e in denied} == {"hospital-a"}
