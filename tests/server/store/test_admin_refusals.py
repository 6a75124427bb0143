"""The refusals of a backup's destination (store/admin.py), against a real store."""

from __future__ import annotations

import pytest

from medcompute.server.errors import FailedPrecondition, InvalidArgument
from medcompute.server.store import admin as store_admin
from tests import store_helpers as H

pytestmark = pytest.mark.timeout(60)


def _backup_refused(tmp_path, destination, error):
    async def body(store):
        with pytest.raises(error) as info:
            await store_admin.backup(store, str(destination))
        return info.value
    return H.with_store(tmp_path / "data", body)


@pytest.mark.parametrize("where", ["backups/today", ""])
def test_a_relative_destination_is_refused(tmp_path, where):
    err = _backup_refused(tmp_path, where, InvalidArgument)
    assert err.field == "destination"
    assert err.message == "expected an absolute path on the server's host"


@pytest.mark.parametrize("inside", ["", "backup"])
def test_a_destination_in_the_data_directory_is_refused(tmp_path, inside):
    err = _backup_refused(tmp_path, tmp_path / "data" / inside, InvalidArgument)
    assert err.field == "destination"
    assert err.message == "the backup must be outside the data directory"


def test_a_folder_that_holds_files_is_refused(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "catalog.db").write_bytes(b"an earlier backup")
    err = _backup_refused(tmp_path, tmp_path / "old", FailedPrecondition)
    assert err.field == "destination"
    assert err.message == "exists and is not an empty folder; choose a new one"
    assert (tmp_path / "old" / "catalog.db").read_bytes() == b"an earlier backup"


def test_a_place_no_folder_can_be_made_is_refused(tmp_path):
    (tmp_path / "a-file").write_bytes(b"")
    err = _backup_refused(tmp_path, tmp_path / "a-file" / "backup", FailedPrecondition)
    assert err.field == "destination"
    assert err.message == ("cannot create the folder here (Not a directory); choose a "
                           "writable place")
