"""Tests of medcompute.server.logs: no patient data in any log record, whoever writes it."""

from __future__ import annotations

import contextlib
import logging

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import _config as pynetdicom_config
from pynetdicom.dsutils import pretty_dataset

from medcompute.server import logs
from medcompute.server.logs import REMOVED, PatientDataFilter, redact

SECRETS = ("98890234", "Doe^Jane", "19700101", "ACC-4711", "Who^Doctor", "Main Street")


def _identifier() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = "98890234", "Doe^Jane", "19700101"
    ds.PatientAddress = "1 Main Street"
    ds.AccessionNumber, ds.Modality = "ACC-4711", "CT"
    item = Dataset()
    item.ReferringPhysicianName = "Who^Doctor"
    ds.ReferencedStudySequence = Sequence([item])
    ds.NumberOfPatientRelatedStudies = 3
    return ds


def _clean(text: str) -> bool:
    return not any(secret in text for secret in SECRETS)


def test_pynetdicom_identifier_lines_lose_their_values_one_by_one():
    """pynetdicom logs an identifier one element per record."""
    lines = [redact(line) for line in pretty_dataset(_identifier())]
    assert all(_clean(line) for line in lines), lines
    assert "(0010,0020) " + REMOVED in lines
    # What identifies no one stays: the level, the modality, the counts.
    assert any("[PATIENT]" in line for line in lines)
    assert any("[CT]" in line for line in lines)
    assert any("[3]" in line and "NumberOfPatientRelatedStudies" in line for line in lines)


def test_whole_data_set_dumps_lose_their_values():
    for dump in (str(_identifier()), "\n".join(pretty_dataset(_identifier()))):
        out = redact(dump)
        assert _clean(out), out
        assert out.count("\n") == dump.count("\n") or out.count("\n") < dump.count("\n")
        assert "QueryRetrieveLevel" in out or "Query/Retrieve Level" in out


def test_a_value_over_several_lines_goes_up_to_the_next_element():
    text = "(0010,4000) LT [first line\nDoe^Jane second line]\n(0008,0060) CS [CT]"
    out = redact(text)
    assert "Doe^Jane" not in out and "[CT]" in out


def test_the_services_own_messages_are_left_as_they_are():
    for message in ("input.dicom[0]: SeriesInstanceUID (0020,000E) is missing or empty",
                    "could not be parsed as DICOM (ValueError at element (0010,0010)): the "
                    "file is damaged",
                    "dicom: rejected an association from 127.0.0.1 (calling AE 'X')",
                    "the file is truncated: element (7FE0,0010) declares 10 bytes"):
        assert redact(message) == message


def test_quoted_values_of_pydicom_are_removed():
    message = "Invalid value for VR PN: 'Doe^Jane'. Please see <https://dicom.nema.org>"
    assert redact(message, quoted=True) == \
        f"Invalid value for VR PN: '{REMOVED}'. Please see <https://dicom.nema.org>"


def test_the_filter_formats_and_redacts_a_record():
    record = logging.LogRecord("pynetdicom.service_class", logging.INFO, __file__, 1,
                               "%s", ("(0010,0020) LO [98890234]   # 1 PatientID",), None)
    assert PatientDataFilter().filter(record)
    assert record.getMessage() == f"(0010,0020) {REMOVED}" and record.args is None


@pytest.fixture
def installed(monkeypatch):
    """logs.install() with the record factory, pynetdicom's and Dask's settings restored
    afterwards."""
    import dask

    monkeypatch.setattr(pynetdicom_config, "LOG_REQUEST_IDENTIFIERS", True)
    monkeypatch.setattr(pynetdicom_config, "LOG_RESPONSE_IDENTIFIERS", True)
    factory = logging.getLogRecordFactory()
    with dask.config.set({"distributed.worker.preload": ["some.other.preload"]}):
        try:
            logs.install()
            yield
        finally:
            logging.setLogRecordFactory(factory)


def test_install_covers_every_logger_level_and_handler(installed, caplog):
    handler_added_later: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            handler_added_later.append(self.format(record))

    keep = Keep()
    logging.getLogger().addHandler(keep)
    try:
        names = ("pynetdicom.service_class", "pydicom", "distributed.worker", "grpc")
        with contextlib.ExitStack() as levels:
            levels.enter_context(caplog.at_level(logging.DEBUG))
            for name in names:          # libraries set their loggers' levels themselves
                levels.enter_context(caplog.at_level(logging.DEBUG, logger=name))
            for name in names:
                logging.getLogger(name).debug("(0010,0010) PN [Doe^Jane]  # 1 PatientName")
            logging.getLogger("pydicom").warning("Invalid value for VR PN: %r", "Doe^Jane")
            logging.getLogger("x").info("args that do not format %d", "Doe^Jane")
    finally:
        logging.getLogger().removeHandler(keep)
    assert len(caplog.records) == 6 and len(handler_added_later) == 6
    assert _clean(caplog.text) and all(_clean(line) for line in handler_added_later)
    assert f"(0010,0010) {REMOVED}" in caplog.text


def test_install_switches_pynetdicoms_dumps_off_and_preloads_the_workers(installed):
    import dask

    assert pynetdicom_config.LOG_REQUEST_IDENTIFIERS is False
    assert pynetdicom_config.LOG_RESPONSE_IDENTIFIERS is False
    assert dask.config.get("distributed.worker.preload") == ["some.other.preload",
                                                             "medcompute.server.logs"]
    factory = logging.getLogRecordFactory()
    logs.install()                          # once is enough: not wrapped twice
    assert logging.getLogRecordFactory() is factory
    assert dask.config.get("distributed.worker.preload") == ["some.other.preload",
                                                             "medcompute.server.logs"]


def test_a_process_that_installed_it_prints_no_value_of_warnings_or_tracebacks():
    """In a process of its own (as `serve`): pydicom's warnings quote the value and go to
    stderr unless logged; a traceback of a data set dump goes through the log as well."""
    import subprocess
    import sys

    script = "\n".join([
        "import logging, warnings",
        "logging.basicConfig(level=logging.DEBUG)",
        "from medcompute.server import logs",
        "logs.install()",
        "warnings.warn(\"Invalid value for VR PN: 'Doe^Jane'\")",
        "try:",
        "    raise ValueError('(0010,0020) LO [98890234]  # 1 PatientID')",
        "except ValueError:",
        "    logging.getLogger('grpc').exception('failed')",
        "root = logging.getLogger().handlers[0]",
        "print(any(isinstance(f, logs.PatientDataFilter) for f in root.filters))",
    ])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"                 # the root handler's filter too
    assert "Invalid value for VR PN" in done.stderr and "failed" in done.stderr
    assert "ValueError: (0010,0020) " + REMOVED in done.stderr
    assert _clean(done.stderr), done.stderr


def test_a_workers_preload_hook_installs_the_factory(monkeypatch):
    monkeypatch.setattr(pynetdicom_config, "LOG_REQUEST_IDENTIFIERS", True)
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    try:
        logs.dask_setup(object())
        record = logging.getLogger("distributed.worker").makeRecord(
            "distributed.worker", logging.INFO, __file__, 1, "(0010,0010) PN [Doe^Jane]",
            (), None)
        assert record.getMessage() == f"(0010,0010) {REMOVED}"
        assert pynetdicom_config.LOG_REQUEST_IDENTIFIERS is True      # not its business
    finally:
        logging.setLogRecordFactory(factory)
