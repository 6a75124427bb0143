"""The command line's conventions, read from the real parser: --json on every command that
prints a result or a listing, -q where there are ids to print, one exit-status table."""

import argparse

import grpc
import pytest

from medcompute.client import exits
from medcompute.client.cli import build_parser, main


def _leaves(parser, path=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, path + (name,))
    if not any(a.required for a in subs):   # `usage` prints by itself, `usage invoice` too
        yield " ".join(path), parser


def _options(parser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


LEAVES = dict(_leaves(build_parser()))
# Commands that print no result or listing of their own.
NO_RESULT = {"serve"}
# Commands whose results have ids to print with -q.
WITH_IDS = {"process", "submit", "cancel", "jobs", "inbox", "store put", "store find",
            "store rm", "store purge", "keys list", "keys revoke", "keys create"}


def test_every_command_with_a_result_has_json():
    missing = [name for name, p in LEAVES.items()
               if name not in NO_RESULT and "--json" not in _options(p)]
    assert missing == []
    assert set(LEAVES) >= WITH_IDS | {"ops", "watch", "fetch", "deliveries", "usage",
                                      "usage invoice", "audit", "store verify", "store info",
                                      "store backup", "store get"}


@pytest.mark.parametrize("name", sorted(WITH_IDS))
def test_commands_with_ids_have_quiet(name):
    assert "-q" in _options(LEAVES[name])


@pytest.mark.parametrize("argv", [["--help"], ["store", "put", "--help"], ["jobs", "--help"],
                                  ["usage", "invoice", "--help"], ["keys", "list", "--help"]])
def test_help_ends_with_the_exit_statuses(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "exit status: 0 ok; 1 a job failed or was cancelled; 2 usage error" in out
    assert "6 not allowed (API key, role); 7 a check found problems" in out


def test_a_usage_error_of_argparse_is_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["jobs", "--state", "sleeping"])
    assert info.value.code == exits.USAGE


@pytest.mark.parametrize(("code", "status"), [
    (grpc.StatusCode.INVALID_ARGUMENT, exits.SERVER),
    (grpc.StatusCode.INTERNAL, exits.SERVER),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, exits.SERVER),
    (grpc.StatusCode.NOT_FOUND, exits.NOT_FOUND),
    (grpc.StatusCode.UNAVAILABLE, exits.UNREACHABLE),
    (grpc.StatusCode.DEADLINE_EXCEEDED, exits.UNREACHABLE),
    (grpc.StatusCode.UNAUTHENTICATED, exits.DENIED),
    (grpc.StatusCode.PERMISSION_DENIED, exits.DENIED),
])
def test_a_failed_call_maps_to_one_status(code, status):
    assert exits.for_status(code) == status
    assert (exits.OK, exits.JOB_FAILED, exits.USAGE, exits.SERVER) == (0, 1, 2, 3)


def test_an_unreachable_server_exits_5(capsys):
    import socket

    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["ops", "--server", f"127.0.0.1:{port}", "--timeout", "2"]) == exits.UNREACHABLE
    assert "UNAVAILABLE" in capsys.readouterr().err


def test_a_refused_connection_says_the_server_is_not_running(capsys):
    import socket

    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["store", "find", "--server", f"127.0.0.1:{port}"]) == exits.UNREACHABLE
    err = capsys.readouterr().err
    assert err.startswith(f"medcompute store: the server is not running at 127.0.0.1:{port} "
                          "(connection refused; start it with `make run` or `medcompute "
                          "serve`): UNAVAILABLE: "), err


def test_keys_json_and_quiet_on_a_data_directory(tmp_path, capsys):
    d = ["--data-dir", str(tmp_path)]
    assert main(["keys", "create", "--subscriber", "ward-7", "--roles", "process",
                 "--json", *d]) == 0
    import json

    created = json.loads(capsys.readouterr().out)
    assert set(created) == {"key", "api_key"} and created["api_key"].startswith("mc_")
    assert set(created["key"]) == {"key_id", "subscriber", "roles", "created", "revoked",
                                   "certificate_sha256"}
    assert main(["keys", "list", "-q", *d]) == 0
    assert capsys.readouterr().out.split() == [created["key"]["key_id"]]
    assert main(["keys", "revoke", created["key"]["key_id"], "--json", *d]) == 0
    assert json.loads(capsys.readouterr().out)["revoked"]
    assert main(["audit", "--json", *d]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)
