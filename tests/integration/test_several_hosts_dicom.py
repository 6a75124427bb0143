"""The DICOM node's deliveries on several front ends sharing one PostgreSQL catalog, as on
several hosts: real ``medcompute serve --dicom-port`` processes, a real PostgreSQL and a
real, slow receiving node (dcmtk's storescp). A front end that starts while another, alive,
is sending a push leaves the push to it: the push is sent once (one try), not once per
host."""

from __future__ import annotations

import os

import psycopg
import pytest

from medcompute.client import Client
from medcompute.proto.v1 import dicom_pb2
from medcompute.server.dicomnet.registry import NodeRegistry
from tests.dicom_peers import StoreSCP, free_port, storescu
from tests.integration.test_dicom_restart import CT5N, _until
from tests.served import Served

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(240)]


def test_a_front_end_that_starts_leaves_a_push_another_is_sending_to_it(tmp_path, postgres):
    url = postgres.fresh_url()
    registry = NodeRegistry(url)
    registry.add_ae_now("SCANNER", "local", "127.0.0.1")
    registry.close()
    data, port_a, port_b = tmp_path / "shared-data", free_port(), free_port()
    # A short lease: host A must renew it while it sends, or host B would take it over.
    flags = ("--catalog", url, "--job-lease", "2", "--complete-on-release",
             "--push-backoff", "0.5")
    # A slow node: each C-STORE takes a second, so host B starts while host A sends.
    slow = StoreSCP(tmp_path / "node", aet="SLOWSCP", extra=("--sleep-during", "1")).start()
    host_a = Served(data, tmp_path / "a.log", *flags, "--spool-name", "a",
                    "--dicom-port", str(port_a))
    host_b = None
    try:
        with Client(host_a.address, timeout=60) as a:
            a.dicom.register_node("slow", "SLOWSCP", "127.0.0.1", slow.port)
            a.dicom.create_rule("local", ["gaussian:sigma=1"], dicom_nodes=["slow"])
            files = sorted(os.path.join(CT5N, f) for f in os.listdir(CT5N))
            done = storescu(port_a, files)
            assert done.returncode == 0, done.stderr
            (push,) = _until(lambda: [p for p in a.dicom.pushes()
                                      if p.state == dicom_pb2.PUSH_STATE_SENDING],
                             what="a push in the sending state")
            host_b = Served(data, tmp_path / "b.log", *flags, "--spool-name", "b",
                            "--dicom-port", str(port_b))
            final = (dicom_pb2.PUSH_STATE_DELIVERED, dicom_pb2.PUSH_STATE_FAILED)
            (after,) = _until(lambda: [p for p in a.dicom.pushes(push.job_id)
                                       if p.state in final], timeout=120,
                              what="the push's end")
        assert after.state == dicom_pb2.PUSH_STATE_DELIVERED, after.reason
        assert after.attempts == 1 and after.instances_delivered == 5     # sent once
        assert len(slow.files()) == 5
    finally:
        host_a.stop()
        if host_b is not None:
            host_b.stop()
        slow.stop()
    with psycopg.connect(url) as db:
        [(owner, attempts)] = db.execute("SELECT owner, attempts FROM dicom_push").fetchall()
    assert owner and attempts == 1
