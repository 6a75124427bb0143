"""Patient data kept out of the log, whoever writes it: this service, pynetdicom, pydicom,
grpc, Dask.

The service's own messages name attributes, AE titles, addresses, ids of its own and
statuses, never element values. Libraries are not so careful: pynetdicom logs every
C-FIND, C-GET and C-MOVE identifier element by element at INFO
(``(0010,0020) LO [98890234]  # 1 PatientID``) and its responses at DEBUG; pydicom's
value warnings quote the value (``Invalid value for VR PN: 'Doe^John'``). So:

- :func:`install` switches pynetdicom's identifier dumps off (``_config``), has Python's
  warnings logged instead of printed (pydicom warns with the value), and makes every log
  record of the process pass :func:`redact` as it is created (a record factory: any
  logger, any level, any handler, including handlers added later; the filter below on the
  root logger's handlers as well, for records made otherwise), and has every
  worker of the embedded Dask cluster do the same (a worker preload of this module,
  :func:`dask_setup`). ``app.start`` calls it first. Workers of an external cluster
  (``--scheduler``) get it with ``dask worker --preload medcompute.server.logs``.
- :func:`redact` removes the value of every DICOM element written out as a data set dump
  (pynetdicom's and pydicom's formats, nested sequences included), except the few
  attributes that identify no one (:data:`SAFE_TAGS`: the query level, SOP classes,
  modality, counts, the image pixel module, the DIMSE command set); and the quoted values
  in pydicom's messages.
- :class:`PatientDataFilter` is the same as a ``logging.Filter``, for handlers an
  operator configures in a process of their own.

The record keeps its level, logger, time and the text around a removed value, so the log
still says what happened (``(0010,0020) <value removed>``).
"""

from __future__ import annotations

import logging
import re

__all__ = ["PatientDataFilter", "REMOVED", "SAFE_TAGS", "dask_setup", "install", "redact"]

REMOVED = "<value removed>"
PRELOAD = "medcompute.server.logs"

#: Elements whose values are logged as they are: they identify no patient.
SAFE_TAGS = frozenset({
    0x00080005,             # SpecificCharacterSet
    0x00080016,             # SOPClassUID
    0x00080052,             # QueryRetrieveLevel
    0x00080054,             # RetrieveAETitle
    0x00080056,             # InstanceAvailability
    0x00080060,             # Modality
    0x00080061,             # ModalitiesInStudy
    0x00080062,             # SOPClassesInStudy
    0x00201200, 0x00201202, 0x00201204, 0x00201206, 0x00201208, 0x00201209,   # counts
})
#: Whole groups whose values are logged: the DIMSE command set, the image pixel module.
_SAFE_GROUPS = frozenset({0x0000, 0x0028})
#: The file meta group is safe but for the instance's UID.
_META, _META_INSTANCE = 0x0002, 0x00020003
#: Patient, visit and study-scheduling groups: removed whatever follows the tag, when it
#: carries anything like a value.
_PATIENT_GROUPS = frozenset({0x0010, 0x0032, 0x0038})

#: A tag as pynetdicom, pydicom and dcmtk write it: (0010,0020) or (0010, 0020).
_TAG = re.compile(r"\(([0-9A-Fa-f]{4}),\s?([0-9A-Fa-f]{4})\)")
#: What follows the tag in an element dump: pynetdicom's `` LO [value]`` or
#: `` SQ (Sequence ...`` / `` LO (no value ...``; pydicom's `` Patient ID    LO: 'value'``.
_DUMP = re.compile(r"^\s+(?:[A-Z]{2}\s+[\[(]|[^\n]*?\b[A-Z]{2}: )")
_VALUE_LIKE = re.compile(r"[\[\]'\"=]")
#: Quoted text in pydicom's messages (its validation quotes the offending value).
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")


def _removes(tag: int, rest: str) -> bool:
    group = tag >> 16
    if tag in SAFE_TAGS or group in _SAFE_GROUPS or (group == _META and tag != _META_INSTANCE):
        return False
    if group in _PATIENT_GROUPS and _VALUE_LIKE.search(rest):
        return True
    return bool(_DUMP.match(rest))


def redact(text: str, *, quoted: bool = False) -> str:
    """``text`` with the value of every dumped DICOM element removed (all up to the next
    element, so a value over several lines goes too); with ``quoted``, every quoted text."""
    if quoted and ("'" in text or '"' in text):
        text = _QUOTED.sub(f"'{REMOVED}'", text)
    if "(" not in text:
        return text
    tags = list(_TAG.finditer(text))
    if not tags:
        return text
    out = [text[:tags[0].start()]]
    for k, match in enumerate(tags):
        stop = tags[k + 1].start() if k + 1 < len(tags) else len(text)
        segment = text[match.end():stop]
        tag = int(match.group(1), 16) << 16 | int(match.group(2), 16)
        out.append(match.group(0))
        if _removes(tag, segment):
            body = segment.rstrip()
            out.append(f" {REMOVED}{segment[len(body):]}")   # keeps the line breaks
        else:
            out.append(segment)
    return "".join(out)


#: Loggers whose quoted text is a value: pydicom's, and Python's warnings (pydicom warns
#: with the same text it logs).
_QUOTING = ("pydicom", "py.warnings")
_FORMATTER = logging.Formatter()


def _scrub(record: logging.LogRecord) -> None:
    """Format the record's message (and traceback) now and keep only the redacted text."""
    if getattr(record, "patient_data_removed", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - arguments that do not format: never print them
        message = f"{record.msg} <arguments removed: they did not format>"
    record.msg = redact(message, quoted=record.name.startswith(_QUOTING))
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
    record.patient_data_removed = True


class PatientDataFilter(logging.Filter):
    """A ``logging.Filter`` that lets every record through, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub(record)
        return True


def _install_here(*, dicom_network: bool) -> None:
    """This process: with ``dicom_network``, pynetdicom's identifier dumps off (a Dask
    worker does not import pynetdicom: not there); warnings logged (pydicom's quote
    values) rather than printed; every record redacted as it is made, and by a filter on
    the root logger's handlers."""
    if dicom_network:
        from pynetdicom import _config as pynetdicom_config

        pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
        pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
    logging.captureWarnings(True)
    for handler in [*logging.getLogger().handlers, logging.lastResort]:
        if handler is not None and not any(isinstance(f, PatientDataFilter)
                                           for f in handler.filters):
            handler.addFilter(PatientDataFilter())
    make = logging.getLogRecordFactory()
    if getattr(make, "redacts_patient_data", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = make(*args, **kwargs)
        _scrub(record)
        return record
    factory.redacts_patient_data = True
    logging.setLogRecordFactory(factory)


def install() -> None:
    """Keep patient data out of this process's log, and out of the logs of the Dask
    workers the embedded cluster starts from now on (their preload)."""
    import dask

    _install_here(dicom_network=True)
    # Dask's scheduler logs a worker's stream found closed as INFO with its traceback
    # ("Batched Comm Closed"), which a stop that closes the workers meets by chance: an
    # expected end, not an error. Its one other record (an error) is still logged.
    logging.getLogger("distributed.batched").setLevel(logging.WARNING)
    preload = list(dask.config.get("distributed.worker.preload", default=None) or [])
    if PRELOAD not in preload:
        dask.config.set({"distributed.worker.preload": [*preload, PRELOAD]})


def dask_setup(worker=None) -> None:
    """A Dask worker's preload hook (``--preload medcompute.server.logs``)."""
    _install_here(dicom_network=False)
