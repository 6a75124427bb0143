"""Delivery between subscribers, with real API keys: a hospital sends, a reading
physician receives in its inbox, watches it as a stream and fetches the result."""

import threading
import time

import grpc
import numpy as np
import pytest

from medcompute.client import Client, ServiceError
from medcompute.proto.v1 import jobs_pb2
from medcompute.server.config import ServerConfig
from medcompute.server.storage.keys import KeyStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def site(tmp_path_factory, server_thread):
    data = tmp_path_factory.mktemp("delivery")
    keys = KeyStore(data)
    tokens = {}
    for name, subscriber, roles in [
        ("admin", "operator", ["admin"]),
        ("hospital", "st-mary", ["process"]),
        ("reader", "dr-lee", ["receive"]),
        ("other", "north-clinic", ["process", "receive"]),
        ("deaf", "no-inbox", ["process"]),
    ]:
        _, tokens[name] = keys.create(subscriber, roles)
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=1, gpu_workers=0)
    with server_thread(config) as server:
        server.tokens = tokens
        yield server


@pytest.fixture(scope="module")
def connect(site):
    opened = []

    def connect(who):
        c = Client(site.address, timeout=60, api_key=site.tokens[who])
        opened.append(c)
        return c
    yield connect
    for c in opened:
        c.close()


@pytest.fixture(scope="module")
def allowed(connect):
    admin = connect("admin")
    rule = admin.allow_delivery("st-mary", "dr-lee")
    assert (rule.sender, rule.recipient) == ("st-mary", "dr-lee") and rule.created_at > 0
    admin.allow_delivery("st-mary", "no-inbox")
    return admin


def _img(seed=0):
    return np.random.default_rng(seed).normal(100, 20, (32, 32)).astype(np.float32)


def test_a_delivered_result_reaches_the_recipient_who_watches_and_fetches_it(connect,
                                                                               allowed):
    hospital, reader = connect("hospital"), connect("reader")
    arrived = []
    ready = threading.Event()
    # The watch starts after the newest delivery already in the inbox, so one that arrives
    # before the watch is open is still sent to it (no wait for the stream to open).
    last = max((d.seq for d in reader.inbox()), default=0)

    def watch():
        for delivery in reader.watch_inbox(after_seq=last, timeout=60):
            arrived.append((time.monotonic(), delivery))
            ready.set()
            return

    watcher = threading.Thread(target=watch)
    watcher.start()
    image = _img()
    job = hospital.submit(image, ["gaussian:sigma=2"], destination="dr-lee",
                          label="CT chest, 2nd read")
    assert job.destination == "dr-lee" and job.delivery == jobs_pb2.DELIVERY_STATE_PENDING
    assert ready.wait(60)
    watcher.join(10)
    [(_, delivery)] = arrived
    assert delivery.job_id == job.job_id and delivery.sender == "st-mary"
    assert delivery.label == "CT chest, 2nd read" and list(delivery.operations) == ["gaussian"]
    assert tuple(delivery.output.shape) == (32, 32) and delivery.fetched_at == 0
    # The sender sees the delivery state, not the recipient's inbox.
    assert hospital.job(job.job_id).delivery == jobs_pb2.DELIVERY_STATE_DELIVERED
    [listed] = [d for d in reader.inbox() if d.job_id == job.job_id]
    assert listed.seq == delivery.seq
    result = reader.fetch(job.job_id)
    np.testing.assert_array_equal(result.array,
                                  hospital.process(image, ["gaussian:sigma=2"]).array)
    after = hospital.job(job.job_id)
    assert after.delivery == jobs_pb2.DELIVERY_STATE_FETCHED
    assert after.fetched_at >= after.delivered_at
    assert [d.job_id for d in reader.inbox(unfetched_only=True)].count(job.job_id) == 0


def test_the_inbox_watch_resumes_after_a_sequence_number(connect, allowed):
    hospital, reader = connect("hospital"), connect("reader")
    jobs = [hospital.submit(_img(s), ["mean:size=3"], destination="dr-lee") for s in (1, 2)]
    for j in jobs:
        hospital.wait(j.job_id, timeout=60)
    everything = reader.inbox()
    before = everything[-3].seq if len(everything) >= 3 else 0
    got = []
    for d in reader.watch_inbox(after_seq=before, timeout=60):
        got.append(d.job_id)
        if len(got) == len([e for e in everything if e.seq > before]):
            break
    assert got[-2:] == [j.job_id for j in jobs]


def test_the_recipient_sees_only_the_delivery_not_the_senders_job(connect, allowed):
    hospital, reader = connect("hospital"), connect("reader")
    job = hospital.submit(_img(3), ["gaussian:sigma=1"], destination="dr-lee")
    hospital.wait(job.job_id, timeout=60)
    for call in ("job", "cancel"):
        with pytest.raises(ServiceError) as info:
            getattr(reader, call)(job.job_id)
        # The recipient has no process role: refused before any lookup.
        assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    other = connect("other")                  # process and receive, but not the recipient
    for call in ("job", "fetch", "cancel"):
        with pytest.raises(ServiceError) as info:
            getattr(other, call)(job.job_id)
        assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert job.job_id not in [d.job_id for d in other.inbox()]
    assert job.job_id not in [j.job_id for j in other.jobs().jobs]


def test_delivery_needs_a_rule_and_a_recipient_with_the_receive_role(connect, allowed):
    hospital, other = connect("hospital"), connect("other")
    with pytest.raises(ServiceError) as info:
        other.submit(_img(), ["gaussian:sigma=1"], destination="dr-lee")
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details.startswith("header.destination:")
    with pytest.raises(ServiceError) as info:
        hospital.submit(_img(), ["gaussian:sigma=1"], destination="nobody-here")
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED  # existence not revealed
    with pytest.raises(ServiceError) as info:
        hospital.submit(_img(), ["gaussian:sigma=1"], destination="no-inbox")
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "receive role" in info.value.details


def test_the_inbox_needs_the_receive_role(connect):
    with pytest.raises(ServiceError) as info:
        connect("hospital").inbox()
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "receive" in info.value.details


def test_delivery_rules_are_managed_by_an_admin_only(connect, allowed):
    admin, hospital = connect("admin"), connect("hospital")
    rules = [(r.sender, r.recipient) for r in admin.delivery_rules()]
    assert ("st-mary", "dr-lee") in rules
    with pytest.raises(ServiceError) as info:
        hospital.allow_delivery("st-mary", "north-clinic")
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(ServiceError) as info:
        admin.allow_delivery("st mary", "dr-lee")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details.startswith("sender:")
    admin.allow_delivery("st-mary", "north-clinic")
    admin.disallow_delivery("st-mary", "north-clinic")
    with pytest.raises(ServiceError) as info:
        admin.disallow_delivery("st-mary", "north-clinic")
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ServiceError) as info:
        hospital.submit(_img(), ["gaussian:sigma=1"], destination="north-clinic")
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_a_failed_delivery_job_shows_as_failed_and_lands_in_no_inbox(connect, allowed):
    hospital, reader = connect("hospital"), connect("reader")
    # A 2-D image projected along axis 5 cannot be resolved: refused at submit, no job.
    with pytest.raises(ServiceError) as info:
        hospital.submit(_img(), ["mip:axis=5"], destination="dr-lee")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    # Cancelled while it runs (a few seconds of work): the delivery failed, nothing arrives.
    volume = np.random.default_rng(4).normal(100, 20, (24, 96, 96)).astype(np.float32)
    job = hospital.submit(volume, ["median:size=5"] * 40, destination="dr-lee", device="cpu")
    cancelled = hospital.cancel(job.job_id)
    assert cancelled.state == jobs_pb2.JOB_STATE_CANCELLED
    assert cancelled.delivery == jobs_pb2.DELIVERY_STATE_FAILED
    assert job.job_id not in [d.job_id for d in reader.inbox()]


def test_every_job_and_inbox_call_is_in_the_audit_log(connect, allowed):
    hospital, reader, admin = connect("hospital"), connect("reader"), connect("admin")
    job = hospital.submit(_img(5), ["gaussian:sigma=1"], destination="dr-lee")
    hospital.wait(job.job_id, timeout=60)
    reader.fetch(job.job_id)
    reader.inbox()
    hospital.jobs()
    hospital.usage()
    entries = admin.audit(limit=1000)
    seen = {(e.subscriber, e.action, e.object_id) for e in entries}
    for expected in [("st-mary", "jobs.submit", job.job_id), ("st-mary", "jobs.watch", job.job_id),
                     ("dr-lee", "jobs.fetch", job.job_id), ("dr-lee", "inbox.list", ""),
                     ("st-mary", "jobs.list", ""), ("st-mary", "usage.get", ""),
                     ("operator", "deliveries.allow", "st-mary->dr-lee")]:
        assert expected in seen, expected
