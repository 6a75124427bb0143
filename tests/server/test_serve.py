"""server/serve.py: the ``serve`` command's arguments and the ServerConfig checks made
before anything starts, and the offline helpers the command line uses on a data
directory."""

from __future__ import annotations

import argparse

import pytest

from medcompute.server import serve
from medcompute.server.config import DEFAULT_ADDRESS, DEFAULT_DATA_DIR


def _duration(text: str) -> float:
    return float(text.rstrip("s"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medcompute")
    sub = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(sub, duration=_duration)
    return parser


def test_serve_parser_defaults():
    args = _parser().parse_args(["serve"])
    assert args.func is serve.run
    assert args.address == DEFAULT_ADDRESS
    assert args.data_dir == str(DEFAULT_DATA_DIR)
    assert args.result_retention == 7 * 86400.0
    assert args.min_free.bytes is not None or args.min_free.percent is not None


def test_serve_parser_uses_the_duration_it_is_given():
    args = _parser().parse_args(["serve", "--cold-dir", "cold", "--cold-after", "90s",
                                 "--result-retention", "12s"])
    assert (args.cold_after, args.result_retention) == (90.0, 12.0)


def test_serve_parser_refuses_a_bad_min_free(capsys):
    with pytest.raises(SystemExit) as stop:
        _parser().parse_args(["serve", "--min-free", "lots"])
    assert stop.value.code == 2
    assert "--min-free" in capsys.readouterr().err


@pytest.mark.parametrize("text, size", [
    ("1048576", 1 << 20), ("64MiB", 64 << 20), ("1.5GiB", 3 << 29), ("512KiB", 512 << 10),
    ("0", 0),
])
def test_stack_bytes_takes_bytes_or_binary_units(text, size):
    assert _parser().parse_args(["serve", "--stack-bytes", text]).stack_bytes == size


def test_batching_defaults():
    args = _parser().parse_args(["serve"])
    assert (args.stack_bytes, args.batch_delay, args.batch_queue) == (64 << 20, 2.0, 64)


@pytest.mark.parametrize("text", ["lots", "-1", "64MB", ""])
def test_stack_bytes_refuses_what_is_not_a_size(capsys, text):
    with pytest.raises(SystemExit) as stop:
        _parser().parse_args(["serve", "--stack-bytes", text])
    assert stop.value.code == 2
    assert "--stack-bytes" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--batch-delay", "-1"], "--batch-delay: expected >= 0, got -1"),
    (["--batch-queue", "0"], "--batch-queue: expected >= 1, got 0"),
    (["--cold-after", "5s"], "need --cold-dir"),
    (["--version", "a=10", "--version", "a=20"], "each name once"),
    (["--processes", "0"], "--processes: expected >= 1"),
    (["--push-associations", "0"], "--push-associations: expected >= 1"),
    (["--catalog", "mysql://db/x"], "--catalog: expected postgresql://USER@HOST/DB or "
     "sqlite:PATH, got a value starting 'mysql'"),
    (["--catalog", "sqlite:"], "--catalog: sqlite:PATH needs the catalog file's PATH"),
    (["--spool-name", "../x"], "--spool-name: expected a folder name"),
    (["--catalog-timeout", "0"], "--catalog-timeout: expected more than 0 seconds, got 0"),
])
def test_run_refuses_a_configuration_before_starting(tmp_path, capsys, argv, message):
    args = _parser().parse_args(["serve", "--data-dir", str(tmp_path), *argv])
    assert serve.run(args) == 2
    assert message in capsys.readouterr().err


def test_offline_keys_and_audit_on_a_data_directory(tmp_path):
    keys = serve.key_store(tmp_path)
    info, token = keys.create("alice", ["process"])
    assert token
    assert [k.key_id for k in serve.key_store(str(tmp_path)).list("alice")] == [info.key_id]
    assert serve.audit_log(tmp_path).list() == []


def test_offline_node_registry_and_its_refusals(tmp_path):
    registry = serve.node_registry(tmp_path)
    try:
        registry.add_ae_now("CT_1", "alice", "127.0.0.1")
        assert [ae.ae_title for ae in registry.list_aes_now()] == ["CT_1"]
        with pytest.raises(serve.MedcomputeError):
            registry.remove_ae_now("NOT_THERE")
    finally:
        registry.close()


def test_invoice_csv():
    text = serve.invoice_csv({"month": "2026-11", "currency": "EUR", "total": "0.00",
                              "subscribers": []})
    assert text.splitlines()[-1] == "2026-11,EUR,,TOTAL,,,0.00"


def test_serve_parser_takes_the_dicom_port_limits():
    args = _parser().parse_args(["serve"])
    assert (args.dicom_pending_timeout, args.dicom_max_pdu, args.dicom_max_per_host,
            args.dicom_ae_alias) == (5.0, 16 << 20, 8, [])
    args = _parser().parse_args(["serve", "--dicom-pending-timeout", "2.5", "--dicom-max-pdu",
                                 "64KiB", "--dicom-max-per-host", "4", "--dicom-ae-alias",
                                 "OLD_NAME", "--dicom-ae-alias", "OTHER"])
    assert (args.dicom_pending_timeout, args.dicom_max_pdu, args.dicom_max_per_host,
            args.dicom_ae_alias) == (2.5, 64 << 10, 4, ["OLD_NAME", "OTHER"])
    assert _parser().parse_args(["serve", "--dicom-max-pdu", "1048576"]).dicom_max_pdu == 1 << 20


@pytest.mark.parametrize("size", ["16 MB", "-1", "lots", "1.5MiB"])
def test_serve_parser_refuses_a_pdu_size_it_cannot_read(size, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--dicom-max-pdu", size])
    assert "--dicom-max-pdu: expected bytes, or a number with KiB, MiB or GiB" in \
        capsys.readouterr().err


def test_the_software_limits(capsys):
    args = _parser().parse_args(["serve", "--software-memory-mb", "512",
                                 "--software-seconds", "30"])
    assert (args.software_memory_mb, args.software_seconds) == (512.0, 30.0)
    for bad in (["--software-memory-mb", "0"], ["--software-seconds", "-1"],
                ["--software-seconds", "nan"], ["--software-memory-mb", "lots"]):
        with pytest.raises(SystemExit) as stop:
            _parser().parse_args(["serve", *bad])
        assert stop.value.code == 2
        assert f"{bad[0]}: expected a number > 0" in capsys.readouterr().err


def test_the_http_door_options():
    args = _parser().parse_args(["serve"])
    assert (args.http_port, args.http_address, args.http_cors, args.http_viewer,
            args.http_max_body_mb) == (None, "127.0.0.1", [], None, 512)
    args = _parser().parse_args([
        "serve", "--http-port", "8042", "--http-address", "10.0.0.5", "--http-cors",
        "https://a.example.org", "--http-cors", "https://b.example.org", "--http-viewer",
        "ohif/dist", "--http-max-body-mb", "2.5"])
    assert (args.http_port, args.http_address, args.http_viewer, args.http_max_body_mb) == (
        8042, "10.0.0.5", "ohif/dist", 2.5)
    assert args.http_cors == ["https://a.example.org", "https://b.example.org"]
