"""Reading statuses of studies (storage/studies.py): the table functions and the store."""

import asyncio

import pytest

from medcompute.server.errors import FailedPrecondition, InvalidArgument
from medcompute.server.storage import studies
from medcompute.server.storage.db import Database
from medcompute.server.storage.studies import UNREAD, StatusRules, StudyStatuses

pytestmark = pytest.mark.timeout(30)


def test_the_table_functions_set_and_read_a_status(catalog_at):
    db = Database(catalog_at)
    try:
        assert db.run(studies.get, "o", "1.2") == (UNREAD, 0.0, "")
        assert db.transaction(studies.set_status, "o", "1.2", "read", "alice", 5.0) == UNREAD
        assert db.transaction(studies.set_status, "o", "1.2", "final", "bob", 6.0) == "read"
        assert db.run(studies.get, "o", "1.2") == ("final", 6.0, "bob")
        assert db.run(studies.all_statuses) == {("o", "1.2"): "final"}
    finally:
        db.close()


def test_the_store_checks_statuses_and_rules(catalog_at):
    db = Database(catalog_at)
    store = StudyStatuses(db, StatusRules((UNREAD, "final"), {UNREAD: ("small",)}))

    async def scenario():
        with pytest.raises(InvalidArgument):
            await store.set("o", "1.2", "nope", by="alice")
        with pytest.raises(FailedPrecondition):
            await store.check_read("o", "1.2", "original")
        assert await store.set("o", "1.2", "final", by="alice") == UNREAD
        assert await store.check_read("o", "1.2", "original") == "final"
        return await store.all()

    try:
        assert asyncio.run(scenario()) == {("o", "1.2"): "final"}
    finally:
        store.close()
        db.close()
