"""API keys: stored hashed, verified in constant time, revoked at once; the audit log."""

import asyncio
import sqlite3

import pytest

from medcompute.server.errors import InvalidArgument, NotFound
from medcompute.server.storage.audit import AuditLog
from medcompute.server.storage.keys import KeyStore, parse_roles

pytestmark = pytest.mark.timeout(30)


def test_a_key_verifies_and_only_its_hash_is_stored(tmp_path):
    keys = KeyStore(tmp_path)
    info, token = keys.create("hospital-a", "process,store")
    assert token.startswith(f"mc_{info.key_id}_") and info.roles == ("process", "store")
    assert asyncio.run(keys.verify(token)) == info
    with sqlite3.connect(keys.path) as db:
        dump = "\n".join(db.iterdump())
    assert token.split("_", 2)[2] not in dump  # the secret itself is nowhere on disk
    keys.close()


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),   # wrong secret
    lambda t: "mc_000000000000_" + t.split("_", 2)[2],    # unknown id
    lambda t: t + "x",                                    # malformed
    lambda t: "",
])
def test_wrong_keys_do_not_verify(catalog_at, mangle):
    keys = KeyStore(catalog_at)
    _, token = keys.create("s", ["process"])
    assert asyncio.run(keys.verify(mangle(token))) is None
    keys.close()


def test_revocation_takes_effect_for_another_connection_at_once(catalog_at):
    admin, server = KeyStore(catalog_at), KeyStore(catalog_at)   # e.g. the CLI and a server
    info, token = admin.create("s", ["receive"])
    assert asyncio.run(server.verify(token)) is not None
    revoked = admin.revoke(info.key_id)
    assert revoked.revoked_at is not None and not revoked.valid
    assert asyncio.run(server.verify(token)) is None
    assert [k.key_id for k in server.list("s")] == [info.key_id]
    with pytest.raises(NotFound):
        admin.revoke("ffffffffffff")
    admin.close()
    server.close()


def test_bad_subscribers_roles_and_certificates(catalog_at):
    keys = KeyStore(catalog_at)
    assert not keys.any()
    with pytest.raises(InvalidArgument, match="process, store, receive, admin") as info:
        keys.create("s", "process,root")
    assert info.value.field == "roles"
    with pytest.raises(InvalidArgument) as info:
        keys.create("bad name!", "process")
    assert info.value.field == "subscriber"
    with pytest.raises(InvalidArgument) as info:
        keys.create("s", "process", certificate_sha256="abc")
    assert info.value.field == "certificate_sha256"
    assert parse_roles(" store, store ,admin") == ("store", "admin")
    keys.create("s", "admin")
    assert keys.any()
    keys.close()


def test_audit_log_filters_and_pages(catalog_at):
    log = AuditLog(catalog_at)

    async def fill():
        for i in range(5):
            await log.record("a" if i % 2 else "b", "process", f"job{i}", "OK")
        await log.record("", "process", "", "UNAUTHENTICATED", "no API key")

    asyncio.run(fill())
    everything = log.list()
    assert [e.object_id for e in everything] == ["job0", "job1", "job2", "job3", "job4", ""]
    assert [e.object_id for e in log.list(subscriber="a")] == ["job1", "job3"]
    page = log.list(limit=2)
    assert [e.object_id for e in log.list(after_seq=page[-1].seq, limit=2)] == ["job2", "job3"]
    assert everything[-1].outcome == "UNAUTHENTICATED" and everything[-1].subscriber == ""
    log.close()


def test_the_table_functions_store_look_up_list_and_revoke(catalog_at):
    from medcompute.server.storage import keys
    from medcompute.server.storage.db import Database

    db = Database(catalog_at)
    try:
        assert not db.run(keys.any_key)
        info = keys.KeyInfo("0123456789ab", "alice", ("process",), 5.0)
        db.transaction(keys.insert, info, "d" * 64)
        assert db.run(keys.any_key)
        assert db.run(keys.lookup, info.key_id)[1:3] == ("alice", "process")
        assert db.run(keys.lookup, info.key_id)[6] == "d" * 64
        assert db.run(keys.list_keys, "alice") == [info]
        assert db.run(keys.list_keys, "bob") == []
        assert db.transaction(keys.revoke, info.key_id, 9.0)[5] == 9.0
        assert db.transaction(keys.revoke, info.key_id, 10.0)[5] == 9.0   # revoked once
        assert db.transaction(keys.revoke, "nope", 10.0) is None
    finally:
        db.close()
