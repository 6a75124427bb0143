"""The DicomService with API keys: rules need the admin role, DICOM nodes the receive
role, and a push to another subscriber's node is visible to its sender and its
recipient, and to no one else."""

from __future__ import annotations

import os
import time

import grpc
import pytest
from pydicom.data import get_testdata_file

from medcompute.client import Client
from medcompute.client.client import ServiceError
from medcompute.proto.v1 import dicom_pb2
from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.registry import NodeRegistry
from medcompute.server.storage.keys import KeyStore
from tests.dicom_peers import StoreSCP, storescu

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CT5N = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                    "98892001", "CT5N")


@pytest.fixture(scope="module")
def node(server_thread, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("keys-data")
    keys = KeyStore(data_dir)
    tokens = {name: keys.create(name, roles)[1] for name, roles in (
        ("operator", "admin"), ("st-mary", "process,store"), ("dr-lee", "receive"),
        ("other", "process,store,receive"))}
    keys.close()
    registry = NodeRegistry(data_dir)
    registry.add_ae_now("SCANNER", "st-mary", "127.0.0.1")
    registry.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=1, dicom_port=0,
                          dicom_quiet_seconds=30.0, dicom_complete_on_release=True)
    with server_thread(config) as running:
        running.tokens = tokens
        yield running


def _client(node, who):
    return Client(node.address, timeout=60, api_key=node.tokens[who])


def test_roles_and_push_visibility(node, tmp_path):
    with _client(node, "st-mary") as hospital, _client(node, "dr-lee") as reader, \
            _client(node, "operator") as admin, _client(node, "other") as other, \
            StoreSCP(tmp_path / "ws", aet="LEEWS") as ws:
        with pytest.raises(ServiceError) as err:
            hospital.dicom.create_rule("st-mary", ["gaussian:sigma=1"])
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(ServiceError) as err:
            hospital.dicom.register_node("ws", "LEEWS", "127.0.0.1", ws.port)
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
        # A rule naming a node the recipient has not registered is refused.
        with pytest.raises(ServiceError) as err:
            admin.dicom.create_rule("st-mary", ["gaussian:sigma=1"], destination="dr-lee",
                                    dicom_nodes=["ws"])
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details.startswith("rule.dicom_nodes[0]:")
        reader.dicom.register_node("ws", "LEEWS", "127.0.0.1", ws.port)
        admin.allow_delivery("st-mary", "dr-lee")
        admin.dicom.create_rule("st-mary", ["gaussian:sigma=1"], destination="dr-lee",
                                dicom_nodes=["ws"])
        files = sorted(os.path.join(CT5N, f) for f in os.listdir(CT5N))
        done = storescu(node.running.dicom_port, files)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 60
        while not [p for p in hospital.dicom.pushes()
                   if p.state == dicom_pb2.PUSH_STATE_DELIVERED]:
            assert time.monotonic() < deadline, hospital.dicom.pushes()
            time.sleep(0.2)
        (sent,) = hospital.dicom.pushes()
        (received,) = reader.dicom.pushes()
        assert sent.push_id == received.push_id
        assert (sent.sender, sent.recipient, sent.node) == ("st-mary", "dr-lee", "ws")
        assert other.dicom.pushes() == [] and other.dicom.nodes() == []
        assert len(ws.files()) == 5
        # The routed job was delivered to the recipient's inbox as well.
        assert [d.job_id for d in reader.inbox()] == [sent.job_id]
