"""Who may open the DICOM port (issue 20, items 1 and 10), against a server that
requires keys, with dcmtk's echoscu/storescu/findscu as the callers.

Only an administrator registers calling AE titles, each with a concrete host or network;
a source (registered with a process or store key) is something the server calls out to
and opens no door; a refused `source add` keeps nothing; `source rm` leaves nothing; the
node answers only to its own AE title and the aliases its operator added."""

from __future__ import annotations

import subprocess

import grpc
import pytest
from pydicom.data import get_testdata_file

from medcompute.client import Client, ServiceError, exits
from medcompute.client.cli import main
from medcompute.server.config import ServerConfig
from medcompute.server.storage.keys import KeyStore
from tests.dicom_peers import program, storescu

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def node(tmp_path_factory, server_thread):
    data = tmp_path_factory.mktemp("dicom-access")
    keys = KeyStore(data)
    tokens = {}
    for name, subscriber, roles in [("admin", "operator", "admin"),
                                    ("store_a", "hospital-a", "store"),
                                    ("process_a", "hospital-a", "process,store,receive"),
                                    ("b", "hospital-b", "process,store,receive")]:
        tokens[name] = keys.create(subscriber, roles)[1]
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=1, gpu_workers=0,
                          require_keys=True, dicom_port=0, dicom_quiet_seconds=1.0,
                          dicom_ae_aliases=("MC_ALIAS",))
    with server_thread(config) as server:
        server.tokens = tokens
        yield server


def _echo(node, aet: str, called: str = "MEDCOMPUTE") -> subprocess.CompletedProcess:
    return subprocess.run([program("echoscu"), "-v", "-aet", aet, "-aec", called, "127.0.0.1",
                           str(node.running.dicom_port)], capture_output=True, text=True,
                          timeout=30)


def _find(node, aet: str) -> subprocess.CompletedProcess:
    return subprocess.run([program("findscu"), "-S", "-aet", aet, "-aec", "MEDCOMPUTE",
                           "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
                           "127.0.0.1", str(node.running.dicom_port)],
                          capture_output=True, text=True, timeout=30)


def _cli(node, key: str, *args: str) -> int:
    return main([*args, "--server", node.address, "--api-key", node.tokens[key]])


def _calling_aes(node) -> dict[str, tuple[str, str]]:
    with Client(node.address, api_key=node.tokens["admin"], timeout=30) as c:
        return {a.ae_title: (a.subscriber, a.host) for a in c.dicom.calling_aes()}


def _sources(node, key: str) -> list[str]:
    with Client(node.address, api_key=node.tokens[key], timeout=30) as c:
        return [s.name for s in c.dicom.sources()]


def _rejected_calling(done: subprocess.CompletedProcess) -> bool:
    """echoscu's output for a rejection, permanent, by the service user, calling AE title
    not recognised."""
    text = done.stdout + done.stderr
    return done.returncode != 0 and "Calling AE Title Not Recognized" in text


def test_a_source_added_with_a_store_key_opens_no_door(node, capsys):
    # The reproduction: a store-only key, host '*', then echoscu and C-FIND.
    assert _cli(node, "store_a", "dicom", "source", "add", "wild", "--ae-title", "WILD_B",
                "--host", "*", "--port", "104") == exits.SERVER
    assert "source.host: expected the PACS's host name or IP address" in \
        capsys.readouterr().err
    assert "wild" not in _sources(node, "store_a")
    # Even from the very host the PACS is registered at.
    assert _cli(node, "store_a", "dicom", "source", "add", "wild", "--ae-title", "WILD_B",
                "--host", "127.0.0.1", "--port", "104") == 0
    assert "WILD_B" not in _calling_aes(node)
    assert _rejected_calling(_echo(node, "WILD_B"))
    assert _find(node, "WILD_B").returncode != 0
    done = storescu(node.running.dicom_port, [get_testdata_file("CT_small.dcm")],
                    aet="WILD_B")
    assert done.returncode != 0
    assert _cli(node, "store_a", "dicom", "source", "rm", "wild") == 0


def test_only_an_administrator_registers_a_calling_ae_and_with_a_concrete_host(node, capsys):
    with Client(node.address, api_key=node.tokens["process_a"], timeout=30) as c:
        with pytest.raises(ServiceError) as err:
            c.dicom.register_calling_ae("SNEAKY", "hospital-a", "127.0.0.1")
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    for host in ("*", "0.0.0.0/0", "0.0.0.0"):
        assert _cli(node, "admin", "dicom", "ae", "add", "CT_A", "--subscriber", "hospital-a",
                    "--host", host) == exits.SERVER
        assert "host: expected the IP address, network (CIDR" in capsys.readouterr().err
    assert "CT_A" not in _calling_aes(node)
    assert _cli(node, "admin", "dicom", "ae", "add", "CT_A", "--subscriber", "hospital-a",
                "--host", "127.0.0.0/8") == 0
    assert _calling_aes(node)["CT_A"] == ("hospital-a", "127.0.0.0/8")
    assert _echo(node, "CT_A").returncode == 0
    assert _cli(node, "admin", "dicom", "ae", "rm", "CT_A") == 0
    assert _rejected_calling(_echo(node, "CT_A"))


def test_a_source_cannot_take_over_or_widen_an_administrators_ae(node, capsys):
    assert _cli(node, "admin", "dicom", "ae", "add", "CT_B", "--subscriber", "hospital-b",
                "--host", "10.9.9.9") == 0
    assert _cli(node, "admin", "dicom", "ae", "add", "CT_A2", "--subscriber", "hospital-a",
                "--host", "10.9.9.8") == 0
    try:
        # Another subscriber's AE title: refused, and nothing is kept.
        assert _cli(node, "process_a", "dicom", "source", "add", "theirs", "--ae-title",
                    "CT_B", "--host", "127.0.0.1", "--port", "104") == exits.SERVER
        assert "source.ae_title: the AE title 'CT_B' is registered for another subscriber" \
            in capsys.readouterr().err
        assert "theirs" not in _sources(node, "process_a")
        # Its own AE title as a source: kept, and the calling AE's host is not widened.
        assert _cli(node, "process_a", "dicom", "source", "add", "ours", "--ae-title",
                    "CT_A2", "--host", "127.0.0.1", "--port", "104") == 0
        aes = _calling_aes(node)
        assert aes["CT_B"] == ("hospital-b", "10.9.9.9")
        assert aes["CT_A2"] == ("hospital-a", "10.9.9.8")
        assert _rejected_calling(_echo(node, "CT_B"))
        assert _rejected_calling(_echo(node, "CT_A2"))
        # Removed, it leaves nothing behind: the calling AE is the administrator's still.
        assert _cli(node, "process_a", "dicom", "source", "rm", "ours") == 0
        assert "ours" not in _sources(node, "process_a")
        assert _calling_aes(node)["CT_A2"] == ("hospital-a", "10.9.9.8")
    finally:
        for aet in ("CT_B", "CT_A2"):
            main(["dicom", "ae", "rm", aet, "--server", node.address, "--api-key",
                  node.tokens["admin"]])


def test_the_node_answers_only_to_its_own_ae_title_and_its_aliases(node):
    assert _cli(node, "admin", "dicom", "ae", "add", "CALLER", "--subscriber", "hospital-a",
                "--host", "127.0.0.1") == 0
    try:
        assert _echo(node, "CALLER").returncode == 0
        assert _echo(node, "CALLER", called="MC_ALIAS").returncode == 0
        # The reproduction: echoscu -aec WRONGAE, storescu -aec NOT_MEDCOMPUTE.
        wrong = _echo(node, "CALLER", called="WRONGAE")
        assert wrong.returncode != 0
        assert "Called AE Title Not Recognized" in wrong.stdout + wrong.stderr
        done = storescu(node.running.dicom_port, [get_testdata_file("CT_small.dcm")],
                        aet="CALLER", called="NOT_MEDCOMPUTE")
        assert done.returncode != 0
        assert "Called AE Title Not Recognized" in done.stdout + done.stderr
        with Client(node.address, api_key=node.tokens["process_a"], timeout=30) as c:
            assert c.dicom.received_series() == []
    finally:
        main(["dicom", "ae", "rm", "CALLER", "--server", node.address, "--api-key",
              node.tokens["admin"]])
