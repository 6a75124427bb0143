"""docs/conformance.md (the DICOM Conformance Statement) says what the code registers: its
tables of SOP classes, transfer syntaxes and IODs are compared with the storage SCP's
application entity, what pushes and collection propose, and what the writers create."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom import AllStoragePresentationContexts

from medcompute.server.dicom import write
from medcompute.server.dicomnet import collect, commit, push
from medcompute.server.dicomnet.scp import TRANSFER_SYNTAXES, StorageSCP
from medcompute.server.worker import version_tasks

STATEMENT = Path(__file__).resolve().parents[3] / "docs" / "conformance.md"
STORAGE = {cx.abstract_syntax for cx in AllStoragePresentationContexts}


def table(name: str) -> list[list[str]]:
    """The rows (cells, stripped) of the Markdown table after ``<!-- table: name -->``."""
    lines = STATEMENT.read_text().splitlines()
    try:
        at = lines.index(f"<!-- table: {name} -->")
    except ValueError:
        pytest.fail(f"docs/conformance.md has no table marked {name!r}")
    rows = []
    for line in lines[at + 1:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not set("".join(cells)) <= set("-: "):
            rows.append(cells)
    return rows[1:]  # less the header


def uids(name: str) -> list[str]:
    out = []
    for row in table(name):
        found = [m for c in row for m in re.findall(r"`([0-9.]+)`", c)]
        assert len(found) == 1, f"table {name!r}: a row without one UID: {row}"
        out.append(found[0])
    return out


def _scp() -> StorageSCP:
    # the AE as the server sets it up with query/retrieve and storage commitment on
    return StorageSCP(None, None, ae_title="MEDCOMPUTE", max_associations=1,
                      max_instance_bytes=1, index=object(), commitments=object())


def test_the_storage_sop_classes_accepted_are_the_ae_s():
    contexts = _scp().ae.supported_contexts
    accepted = {cx.abstract_syntax for cx in contexts if cx.abstract_syntax in STORAGE}
    listed = uids("storage-sop-classes")
    assert len(listed) == len(set(listed))
    assert set(listed) == accepted
    for cx in contexts:  # each with every transfer syntax of the statement, both roles
        if cx.abstract_syntax in STORAGE:
            assert list(cx.transfer_syntax) == list(TRANSFER_SYNTAXES)
            assert cx.scu_role and cx.scp_role


def test_the_other_sop_classes_accepted_are_the_ae_s():
    contexts = _scp().ae.supported_contexts
    others = {cx.abstract_syntax for cx in contexts if cx.abstract_syntax not in STORAGE}
    assert set(uids("scp-sop-classes")) == others


def test_the_transfer_syntaxes_accepted_are_the_ae_s_in_its_order():
    assert uids("transfer-syntaxes") == [str(t) for t in TRANSFER_SYNTAXES]


@pytest.mark.parametrize("name", ["storage-sop-classes", "scp-sop-classes",
                                  "transfer-syntaxes", "scu-sop-classes"])
def test_each_row_names_its_uid_as_the_standard_does(name):
    for row in table(name):
        uid = re.search(r"`([0-9.]+)`", row[1]).group(1)
        assert row[0] == UID(uid).name, f"{uid} is {UID(uid).name!r}, not {row[0]!r}"


def test_the_sop_classes_proposed_are_those_of_push_and_collection():
    path = pydicom.data.get_testdata_file("CT_small.dcm")
    ct = pydicom.dcmread(path)
    with tempfile.TemporaryDirectory() as folder:
        instances = push._spool([Path(path).read_bytes()], folder)
    proposed = push._ae("MEDCOMPUTE", instances, 5.0, commitments=object()).requested_contexts
    pairs = {(cx.abstract_syntax, tuple(cx.transfer_syntax)) for cx in proposed}
    # a push proposes each instance's SOP class in its own stored transfer syntax
    assert ct.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ct.SOPClassUID, (ExplicitVRLittleEndian,)) in pairs
    others = {cx.abstract_syntax for cx in proposed} - {ct.SOPClassUID}
    assert others == {commit.StorageCommitmentPushModel}
    assert set(uids("scu-sop-classes")) == {*collect.QUERY_MODELS,
                                             commit.StorageCommitmentPushModel}
    text = STATEMENT.read_text()
    assert f"SCP role of the {len(collect.GET_STORAGE_CONTEXTS)} storage SOP classes" in \
        " ".join(text.split())


def test_the_iods_created_are_those_the_writers_use():
    created = {*write._KEEP_CLASS, write.MULTIFRAME_WORD_SC, version_tasks._SC_BYTE,
               version_tasks._SC_WORD}
    listed = uids("iods-created")
    assert len(listed) == len(set(listed))
    assert set(listed) == created
