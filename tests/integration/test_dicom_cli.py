"""The DICOM books from the command line: nodes, routing rules and sources listed and
removed (plain and --json), and a delivery rule taken back."""

from __future__ import annotations

import json

import pytest

from medcompute.client import exits
from medcompute.client.cli import main
from medcompute.server.config import ServerConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def node(server_thread, tmp_path_factory):
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path_factory.mktemp("books"),
                          workers=1, dicom_port=0)
    with server_thread(config) as running:
        yield running


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_nodes_are_listed_and_removed(node, capsys):
    s = ("--server", node.address)
    assert _run(capsys, "dicom", "node", "add", "pacs-a", "--ae-title", "PACSA", "--host",
                "127.0.0.1", "--port", "11112", *s)[0] == 0
    code, out, _ = _run(capsys, "dicom", "node", "list", *s)
    assert code == 0 and out.split() == ["pacs-a", "PACSA", "127.0.0.1:11112"]
    code, out, _ = _run(capsys, "dicom", "node", "list", "--json", *s)
    [listed] = json.loads(out)
    assert (listed["name"], listed["ae_title"], listed["port"]) == ("pacs-a", "PACSA", 11112)
    code, out, _ = _run(capsys, "dicom", "node", "rm", "pacs-a", *s)
    assert code == 0 and out.strip() == "removed DICOM node pacs-a"
    code, out, err = _run(capsys, "dicom", "node", "rm", "pacs-a", *s)
    assert code == exits.NOT_FOUND and "name: no DICOM node 'pacs-a'" in err
    assert _run(capsys, "dicom", "node", "list", "--json", *s)[1].strip() == "[]"


def test_rules_are_listed_and_removed(node, capsys):
    s = ("--server", node.address)
    code, out, _ = _run(capsys, "dicom", "rule", "add", "--subscriber", "local", "--op",
                        "gaussian:sigma=1", *s)
    rule_id = out.split()[-1]
    assert code == 0
    code, out, _ = _run(capsys, "dicom", "rule", "list", *s)
    assert out.split()[:2] == [rule_id, "local"] and "gaussian" in out
    code, out, _ = _run(capsys, "dicom", "rule", "rm", rule_id, "--json", *s)
    assert json.loads(out) == {"rule_id": rule_id, "removed": True}
    code, _, err = _run(capsys, "dicom", "rule", "rm", rule_id, *s)
    assert code == exits.NOT_FOUND and "no routing rule" in err
    assert rule_id not in _run(capsys, "dicom", "rule", "list", *s)[1]


def test_sources_are_listed(node, capsys):
    s = ("--server", node.address)
    assert _run(capsys, "dicom", "source", "add", "pacs", "--ae-title", "PACS", "--host",
                "127.0.0.1", "--port", "11112", *s)[0] == 0
    code, out, _ = _run(capsys, "dicom", "source", "list", *s)
    assert code == 0 and out.split() == ["pacs", "PACS", "127.0.0.1:11112", "move"]
    [listed] = json.loads(_run(capsys, "dicom", "source", "list", "--json", *s)[1])
    assert (listed["name"], listed["method"]) == ("pacs", "RETRIEVE_METHOD_MOVE")
    code, out, _ = _run(capsys, "dicom", "source", "rm", "pacs", *s)
    assert code == 0 and out.strip() == "removed source pacs"


def test_a_delivery_rule_is_taken_back(node, capsys):
    s = ("--server", node.address)
    code, out, _ = _run(capsys, "deliveries", "allow", "st-anne", "dr-ray", *s)
    assert code == 0 and "st-anne may deliver results to dr-ray" in out
    code, out, _ = _run(capsys, "deliveries", "disallow", "st-anne", "dr-ray", *s)
    assert code == 0 and "st-anne may no longer deliver results to dr-ray" in out
    code, _, err = _run(capsys, "deliveries", "disallow", "st-anne", "dr-ray", *s)
    assert code == exits.NOT_FOUND
    assert "recipient: no rule lets 'st-anne' deliver to 'dr-ray'" in err
    assert "st-anne" not in _run(capsys, "deliveries", "list", *s)[1]
