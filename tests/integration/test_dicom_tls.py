"""DICOM TLS: dcmtk's storescu sends over TLS (mutual: it presents a certificate our CA
signed) into the TLS listener, and a rule job runs; a plain storescu is not served and
the server goes on serving. Results are pushed to dcmtk's storescp over TLS; a node
whose certificate our CA for it did not sign, or that does not speak TLS, fails at once
with the TLS reason. Bad TLS settings are refused naming the field, and nothing is
kept."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time

import grpc
import pytest
from pydicom.data import get_testdata_file

from medcompute.client import Client, exits
from medcompute.client.cli import main
from medcompute.client.client import ServiceError
from medcompute.client.dicom import tls
from medcompute.proto.v1 import dicom_pb2, jobs_pb2
from medcompute.server.app import check_address
from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.registry import NodeRegistry
from medcompute.server.dicomnet.tls import listener_context
from medcompute.server.errors import FailedPrecondition
from tests.dicom_peers import Orthanc, StoreSCP, free_port, program, storescu
from tests.dicom_tls import Authority

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CT5N = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                    "98892001", "CT5N")
FILES = sorted(os.path.join(CT5N, f) for f in os.listdir(CT5N))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = Authority(tmp_path_factory.mktemp("pki"))
    other = Authority(tmp_path_factory.mktemp("other-pki"), "Another CA")
    return {"ca": ca, "other": other, "server": ca.issue("medcompute"),
            "scanner": ca.issue("scanner"), "pacs": ca.issue("pacs"),
            "stranger": other.issue("stranger")}


@pytest.fixture(scope="module")
def node(server_thread, tmp_path_factory, pki):
    data_dir = tmp_path_factory.mktemp("tls-data")
    registry = NodeRegistry(data_dir)
    registry.add_ae_now("SCANNER", "local", "127.0.0.1")
    registry.close()
    server = pki["server"]
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=1, dicom_port=0,
                          dicom_quiet_seconds=30.0, dicom_complete_on_release=True,
                          dicom_push_attempts=3, dicom_push_backoff=0.3,
                          dicom_tls_cert=str(server.cert), dicom_tls_key=str(server.key),
                          dicom_tls_ca=str(pki["ca"].ca))
    with server_thread(config) as running:
        yield running


def _tls_storescu(port, files, pem, ca):
    return storescu(port, files, extra=("+tls", str(pem.key), str(pem.cert), "+cf", str(ca)))


def _echo_tls(port, pem, ca) -> int:
    return subprocess.run([program("echoscu"), "-aet", "SCANNER", "-aec", "MEDCOMPUTE",
                           "+tls", str(pem.key), str(pem.cert), "+cf", str(ca), "127.0.0.1",
                           str(port)], capture_output=True, timeout=30).returncode


def test_storescu_over_tls_is_stored_and_routed_and_plain_callers_are_not_served(node, pki):
    port = node.running.dicom_port
    with Client(node.address, timeout=60) as c:
        rule = c.dicom.create_rule("local", ["gaussian:sigma=1"], modality="CT")
        try:
            done = _tls_storescu(port, FILES, pki["scanner"], pki["ca"].ca)
            assert done.returncode == 0, done.stderr
            deadline = time.monotonic() + 60
            while not (routed := [s for s in c.dicom.received_series() if s.jobs]):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            (series,) = routed
            assert series.state == dicom_pb2.SERIES_STATE_COMPLETE and series.instances == 5
            (job,) = series.jobs
            assert job.rule_id == rule.rule_id
            assert c.wait(job.job_id, timeout=60).state == jobs_pb2.JOB_STATE_SUCCEEDED
        finally:
            c.dicom.delete_rule(rule.rule_id)
    # Plain DICOM to the TLS port: no association (the handshake fails), nothing stored.
    plain = storescu(port, FILES[:1], timeout=30)
    assert plain.returncode != 0
    # A caller whose certificate another CA signed: refused (mutual TLS).
    assert _tls_storescu(port, FILES[:1], pki["stranger"], pki["ca"].ca).returncode != 0
    # A caller that connects and never starts the handshake holds no slot for long.
    idle = socket.create_connection(("127.0.0.1", port))
    try:
        # ... and the server goes on serving.
        assert _echo_tls(port, pki["scanner"], pki["ca"].ca) == 0
    finally:
        idle.close()
    with Client(node.address, timeout=60) as c:
        assert len(c.dicom.received_series()) == 1


def _wait(c, job_id, count, timeout=60):
    final = (dicom_pb2.PUSH_STATE_DELIVERED, dicom_pb2.PUSH_STATE_FAILED)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pushes = {p.node: p for p in c.dicom.pushes(job_id)}
        if len(pushes) == count and all(p.state in final for p in pushes.values()):
            return pushes
        time.sleep(0.2)
    raise AssertionError(f"pushes did not end: {c.dicom.pushes(job_id)}")


def test_results_are_pushed_over_tls_and_an_untrusted_node_fails_with_the_reason(
        node, pki, tmp_path, capsys):
    server = ["--server", node.address]
    ca = pki["ca"].ca
    pacs = pki["pacs"]
    # storescp over TLS requires the caller's certificate (its default, -rc).
    secure = StoreSCP(tmp_path / "secure", aet="SECURESCP",
                      extra=("+tls", str(pacs.key), str(pacs.cert), "+cf", str(ca))).start()
    # Its certificate is signed by another CA than the one the node is registered with.
    untrusted = StoreSCP(tmp_path / "untrusted", aet="UNTRUSTED",
                         extra=("+tls", str(pki["stranger"].key), str(pki["stranger"].cert),
                                "+cf", str(ca))).start()
    plain = StoreSCP(tmp_path / "plain", aet="PLAINSCP").start()
    mine = pki["server"]
    try:
        assert main(["dicom", "node", "add", "secure", "--ae-title", "SECURESCP", "--host",
                     "127.0.0.1", "--port", str(secure.port), "--dicom-tls-ca", str(ca),
                     "--dicom-tls-cert", str(mine.cert), "--dicom-tls-key", str(mine.key),
                     "--json", *server]) == 0
        shown = capsys.readouterr().out
        assert '"client_key_set": true' in shown and "PRIVATE KEY" not in shown
        with Client(node.address, timeout=60) as c:
            c.dicom.register_node("untrusted", "UNTRUSTED", "127.0.0.1", untrusted.port,
                                  tls=tls(ca_pem=ca.read_text(),
                                          client_cert_pem=mine.cert.read_text(),
                                          client_key_pem=mine.key.read_text()))
            c.dicom.register_node("not-tls", "PLAINSCP", "127.0.0.1", plain.port,
                                  tls=tls(ca_pem=ca.read_text()))
            c.dicom.register_node("tls-down", "NOBODY", "127.0.0.1", free_port(),
                                  tls=tls(ca_pem=ca.read_text()))
            (listed,) = [n for n in c.dicom.nodes() if n.name == "secure"]
            assert listed.HasField("tls") and not listed.tls.client_key_pem
            rule = c.dicom.create_rule("local", ["gaussian:sigma=1"], modality="CT",
                                       dicom_nodes=["secure", "untrusted", "not-tls",
                                                    "tls-down"])
            try:
                # A series of its own (new UIDs would be the same pixels): CT5N again is
                # received again, as a new batch.
                done = _tls_storescu(node.running.dicom_port, FILES, pki["scanner"], ca)
                assert done.returncode == 0, done.stderr
                deadline = time.monotonic() + 60
                while not (jobs := [j for s in c.dicom.received_series() for j in s.jobs
                                    if j.rule_id == rule.rule_id]):
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
                pushes = _wait(c, jobs[0].job_id, 4)
            finally:
                c.dicom.delete_rule(rule.rule_id)
        ok = pushes["secure"]
        assert ok.state == dicom_pb2.PUSH_STATE_DELIVERED and ok.instances_delivered == 5
        assert len(secure.files()) == 5
        bad = pushes["untrusted"]
        assert bad.state == dicom_pb2.PUSH_STATE_FAILED and bad.attempts == 1
        assert bad.reason.startswith("TLS: the peer's certificate did not verify "
                                     "(unable to get local issuer certificate)"), bad.reason
        assert not untrusted.files()
        nope = pushes["not-tls"]
        assert nope.state == dicom_pb2.PUSH_STATE_FAILED and nope.attempts == 1
        assert nope.reason.startswith("TLS: "), nope.reason
        assert not plain.files()
        # Nothing listens: transient as without TLS, tried again, then given up.
        down = pushes["tls-down"]
        assert down.state == dicom_pb2.PUSH_STATE_FAILED and down.attempts == 3
        assert down.reason == ("the node is unreachable (Connection refused) (gave up after "
                               "3 tries)")
    finally:
        secure.stop()
        untrusted.stop()
        plain.stop()


def test_bad_tls_settings_are_refused_naming_the_field(node, pki, tmp_path, capsys):
    ca, mine, other = pki["ca"].ca, pki["server"], pki["scanner"]
    cases = [
        (tls(ca_pem="not a certificate"), "node.tls.ca_pem"),
        (tls(client_cert_pem=mine.cert.read_text()), "node.tls.client_key_pem"),
        (tls(client_key_pem=mine.key.read_text()), "node.tls.client_cert_pem"),
        (tls(client_cert_pem="garbage", client_key_pem=mine.key.read_text()),
         "node.tls.client_cert_pem"),
        # A key that is not the certificate's.
        (tls(client_cert_pem=mine.cert.read_text(), client_key_pem=other.key.read_text()),
         "node.tls.client_key_pem"),
        (tls(server_name="two words"), "node.tls.server_name"),
    ]
    with Client(node.address, timeout=60) as c:
        before = [n.name for n in c.dicom.nodes()]
        for settings, field in cases:
            with pytest.raises(ServiceError) as err:
                c.dicom.register_node("bad-tls", "X", "127.0.0.1", 104, tls=settings)
            assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details.startswith(f"{field}:"), (field, err.value.details)
        with pytest.raises(ServiceError) as err:
            c.dicom.register_source("bad-tls", "PACS", "127.0.0.1", 104,
                                    tls=tls(ca_pem="-----BEGIN CERTIFICATE-----\nxx\n"))
        assert err.value.details.startswith("source.tls.ca_pem:")
        assert [n.name for n in c.dicom.nodes()] == before
        assert not [s for s in c.dicom.sources() if s.name == "bad-tls"]
    # A file the command line cannot read: a usage error naming the option; nothing sent.
    args = ["dicom", "node", "add", "bad-tls", "--ae-title", "X", "--host", "127.0.0.1",
            "--port", "104", "--server", node.address]
    assert main([*args, "--dicom-tls-ca", str(tmp_path / "missing.pem")]) == exits.USAGE
    assert "--dicom-tls-ca: cannot read" in capsys.readouterr().err
    unreadable = tmp_path / "unreadable.pem"
    unreadable.write_text(ca.read_text())
    unreadable.chmod(0)
    if not os.access(unreadable, os.R_OK):        # (root reads it anyway)
        assert main([*args, "--dicom-tls-ca", str(unreadable)]) == exits.USAGE
        assert "--dicom-tls-ca: cannot read" in capsys.readouterr().err
    assert main([*args, "--dicom-tls-cert", str(mine.cert)]) == exits.SERVER
    assert "node.tls.client_key_pem:" in capsys.readouterr().err
    assert main(["dicom", "source", "add", "bad", "--ae-title", "P", "--host", "127.0.0.1",
                 "--port", "104", "--dicom-tls-key", str(tmp_path / "nokey.pem"),
                 "--server", node.address]) == exits.USAGE
    assert "--dicom-tls-key: cannot read" in capsys.readouterr().err


def test_the_listener_needs_a_usable_certificate_and_key(pki, tmp_path):
    server = pki["server"]
    with pytest.raises(FailedPrecondition) as err:
        listener_context(str(server.cert), "")
    assert err.value.field == "--dicom-tls-key"
    with pytest.raises(FailedPrecondition) as err:
        listener_context("", "", str(pki["ca"].ca))
    assert err.value.field == "--dicom-tls-ca"
    with pytest.raises(FailedPrecondition) as err:
        listener_context(str(tmp_path / "none.pem"), str(server.key))
    assert err.value.field == "--dicom-tls-cert"
    with pytest.raises(FailedPrecondition) as err:
        listener_context(str(server.cert), str(pki["scanner"].key))
    assert err.value.field == "--dicom-tls-cert"
    with pytest.raises(FailedPrecondition) as err:
        listener_context(str(server.cert), str(server.key), str(tmp_path / "none.pem"))
    assert err.value.field == "--dicom-tls-ca"
    ctx = listener_context(str(server.cert), str(server.key), str(pki["ca"].ca))
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    # With TLS, a DICOM port on another address needs no --insecure; without, it does.
    tls_on = ServerConfig(dicom_port=0, dicom_address="0.0.0.0",
                          dicom_tls_cert=str(server.cert), dicom_tls_key=str(server.key))
    check_address(tls_on)
    with pytest.raises(FailedPrecondition) as err:
        check_address(ServerConfig(dicom_port=0, dicom_address="0.0.0.0"))
    assert err.value.field == "--dicom-address"
    assert "--dicom-tls-cert" in err.value.message



def test_serve_refuses_an_unusable_dicom_certificate_before_starting(tmp_path, capsys):
    assert main(["serve", "--address", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
                 "--dicom-port", "0", "--dicom-tls-cert", str(tmp_path / "none.pem"),
                 "--dicom-tls-key", str(tmp_path / "none.key")]) == exits.USAGE
    err = capsys.readouterr().err
    assert "--dicom-tls-cert: cannot use" in err and "No such file or directory" in err
    assert main(["serve", "--address", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
                 "--dicom-port", "0", "--dicom-tls-ca", str(tmp_path / "ca.pem")]) == \
        exits.USAGE
    assert "--dicom-tls-ca needs --dicom-tls-cert" in capsys.readouterr().err


def test_collect_from_an_orthanc_over_tls_by_get_and_by_move(node, pki, tmp_path):
    pacs_pem, ca = pki["pacs"], pki["ca"].ca
    me = {"AET": "MEDCOMPUTE", "Host": "127.0.0.1", "Port": node.running.dicom_port,
          "UseDicomTls": True}
    orthanc_tls = {"DicomTlsEnabled": True, "DicomTlsCertificate": str(pacs_pem.cert),
                   "DicomTlsPrivateKey": str(pacs_pem.key),
                   "DicomTlsTrustedCertificates": str(ca),
                   "DicomTlsRemoteCertificateRequired": True}
    mine = pki["server"]
    with Orthanc(tmp_path / "pacs", aet="TLSPACS", modalities={"medcompute": me},
                 extra=orthanc_tls) as pacs, Client(node.address, timeout=60) as c:
        done = _tls_storescu(pacs.dicom_port, [get_testdata_file("CT_small.dcm"),
                                               get_testdata_file("MR_small.dcm")],
                             pki["scanner"], ca)
        # (storescu calls as SCANNER; the called AE is not checked by this Orthanc)
        assert done.returncode == 0, done.stderr
        settings = tls(ca_pem=ca.read_text(), client_cert_pem=mine.cert.read_text(),
                       client_key_pem=mine.key.read_text())
        c.dicom.register_source("tls-pacs", "TLSPACS", "127.0.0.1", pacs.dicom_port,
                                method="get", tls=settings)
        (listed,) = [s for s in c.dicom.sources() if s.name == "tls-pacs"]
        assert listed.HasField("tls") and listed.tls.client_key_set
        out = c.dicom.collect("tls-pacs", modality="CT")
        assert (out.series_found, out.series_retrieved, out.instances_retrieved) == (1, 1, 1)
        assert not out.failures
        # C-MOVE: the Orthanc calls back over TLS, presenting its certificate.
        out = c.dicom.collect("tls-pacs", modality="MR", method="move")
        assert (out.series_found, out.series_retrieved) == (1, 1), out.failures
        # Registered with a CA that did not sign the Orthanc's certificate: refused, with
        # the TLS reason.
        c.dicom.register_source("tls-pacs", "TLSPACS", "127.0.0.1", pacs.dicom_port,
                                method="get", tls=tls(ca_pem=pki["other"].ca.read_text()))
        with pytest.raises(ServiceError) as err:
            c.dicom.collect("tls-pacs")
        assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.details.startswith("source.tls: the source 'tls-pacs': TLS: the "
                                            "peer's certificate did not verify"), \
            err.value.details
        # Nothing listens: unavailable, as without TLS.
        c.dicom.register_source("tls-pacs", "TLSPACS", "127.0.0.1", free_port(),
                                tls=tls(ca_pem=ca.read_text()))
        with pytest.raises(ServiceError) as err:
            c.dicom.collect("tls-pacs")
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        assert err.value.details == ("source: the source 'tls-pacs' is unreachable "
                                     "(Connection refused)")
        c.dicom.delete_source("tls-pacs")
