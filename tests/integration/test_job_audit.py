"""A job's end, its usage record and the audit entry of the call that ran it are written in
one transaction (and the entry once); a call that ends otherwise than its job gets a
second entry saying how."""

import threading

import grpc
import numpy as np
import pytest

from medcompute.client import Client, ServiceError
from medcompute.proto.v1 import jobs_pb2
from medcompute.server.config import ServerConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


class Transactions:
    """The statements of the catalog connection, cut into its transactions (SQLite's own
    trace callback on the server's connection)."""

    def __init__(self, server):
        self.db = server.running.catalog.db.connection
        self.lock = threading.Lock()
        self.blocks: list[list[str]] = []
        self._open: list[str] | None = None

    def __enter__(self):
        self.db.set_trace_callback(self._statement)
        return self

    def __exit__(self, *exc):
        self.db.set_trace_callback(None)

    def _statement(self, sql: str) -> None:
        with self.lock:
            text = " ".join(sql.split())
            if text.startswith("BEGIN"):
                self._open = []
            elif text.startswith("COMMIT") and self._open is not None:
                self.blocks.append(self._open)
                self._open = None
            elif self._open is not None:
                self._open.append(text)

    def holding(self, *fragments: str) -> list[list[str]]:
        """The committed transactions with a statement for each fragment."""
        with self.lock:
            return [b for b in self.blocks
                    if all(any(f in s for s in b) for f in fragments)]


@pytest.fixture(scope="module")
def served(server_thread, tmp_path_factory):
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path_factory.mktemp("data"),
                          workers=1, gpu_workers=0)
    with server_thread(config) as server:
        yield server


def _entries(client, job_id: str):
    return [e for e in client.audit(limit=1000) if e.object_id == job_id]


def _image(seed: int, shape=(32, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(np.int16)


def test_a_process_call_writes_its_audit_entry_with_the_jobs_end(served):
    with Client(served.address, timeout=60) as c, Transactions(served) as tx:
        r = c.process(_image(1), ["gaussian:sigma=1"], device="cpu")
        entries = _entries(c, r.job_id)
    assert [(e.action, e.outcome) for e in entries] == [("process", "OK")]
    # The usage record and the audit entry were inserted by the same transaction.
    assert len(tx.holding("INSERT INTO usage", "INSERT INTO audit")) == 1


def test_a_job_that_fails_writes_one_entry_with_its_code_in_the_same_transaction(served):
    with Client(served.address, timeout=60) as c, Transactions(served) as tx:
        with pytest.raises(ServiceError) as info:
            # Refused by the pipeline check, which runs once the job exists.
            c.process(_image(2), ["gaussian:sigma=-1"], device="cpu")
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        failed = [e for e in c.audit(limit=1000) if e.action == "process"
                  and e.outcome == "INVALID_ARGUMENT"]
        job = c.job(failed[-1].object_id)
    assert job.state == jobs_pb2.JOB_STATE_FAILED
    assert len([e for e in failed if e.object_id == failed[-1].object_id]) == 1
    assert tx.holding("INSERT INTO usage", "INSERT INTO audit")


def test_a_batch_writes_one_entry_per_image_with_its_end_and_one_for_the_call(served):
    images = [_image(10 + k) for k in range(3)]
    with Client(served.address, timeout=60) as c, Transactions(served) as tx:
        items = list(c.process_many(images, ["gaussian:sigma=1"], device="cpu"))
        assert all(item.ok for item in items)
        entries = [e for e in c.audit(limit=1000) if e.action == "process.batch"]
    job_ids = {item.job_id for item in items}
    per_job = [e for e in entries if e.object_id in job_ids]
    # One entry per image's job, and the call's own (named after its first job).
    assert sorted(e.object_id for e in per_job if "batch of" not in e.detail) == \
        sorted(job_ids)
    assert [e.outcome for e in per_job if "batch of" in e.detail] == ["OK"]
    assert len(tx.holding("INSERT INTO usage", "INSERT INTO audit")) >= 1


def test_a_submit_writes_its_entry_with_the_queued_job(served):
    with Client(served.address, timeout=60) as c, Transactions(served) as tx:
        job = c.submit(_image(20), ["gaussian:sigma=1"], device="cpu")
        job_id = job.job_id
        c.wait(job_id, timeout=60)
        entries = [e for e in c.audit(limit=1000)
                   if e.object_id == job_id and e.action == "jobs.submit"]
    assert [e.outcome for e in entries] == ["OK"]
    assert tx.holding("UPDATE job_requests SET bytes_in", "INSERT INTO audit")


def test_a_caller_that_goes_away_while_the_result_is_sent_gets_a_second_entry(served):
    """The job succeeded (entry OK, with its end); the call did not: CANCELLED too."""
    from medcompute.client.calls import _descriptor
    from medcompute.client.io import LocalImage
    from medcompute.client.ops import parse_op
    from medcompute.proto.v1 import image_pb2, processing_pb2, processing_pb2_grpc

    vol = _image(30, shape=(48, 256, 256))            # a 12 MiB float32 result: 12 chunks
    header = processing_pb2.ProcessHeader(
        pipeline=[parse_op("gaussian:sigma=1")], device=processing_pb2.DEVICE_CPU,
        input=image_pb2.ImageSource(inline=_descriptor(LocalImage(array=vol), 0)))
    data = vol.tobytes()
    messages = [processing_pb2.ProcessRequest(header=header)] + [
        processing_pb2.ProcessRequest(chunk=image_pb2.Chunk(data=data[at:at + (1 << 20)]))
        for at in range(0, len(data), 1 << 20)]
    options = [("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(served.address, options=options) as channel:
        call = processing_pb2_grpc.ProcessingServiceStub(channel).Process(
            iter(messages), timeout=120)
        first = next(call)                 # the result header: the job has ended
        job_id = first.header.job_id
        call.cancel()
    with Client(served.address, timeout=60) as c:
        for _ in range(100):
            outcomes = sorted(e.outcome for e in _entries(c, job_id))
            if len(outcomes) == 2:
                break
            threading.Event().wait(0.1)
    assert outcomes == ["CANCELLED", "OK"]
