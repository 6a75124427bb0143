"""Every RPC x {no key, revoked key, wrong role, right role, another subscriber's id}."""

import grpc
import numpy as np
import pytest

from medcompute.client import Client, ServiceError
from medcompute.server.config import ServerConfig
from medcompute.server.storage.keys import KeyStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

IMAGE = np.arange(64, dtype=np.int16).reshape(8, 8)
ROLE_OF = {  # the role each call needs (any of several)
    "process": ("process",), "operations": None,
    "register": ("store",), "find": ("store", "receive"), "get": ("store", "receive"),
    "preview": ("store", "receive"), "delete": ("store",),
    "verify": ("admin",), "backup": ("admin",), "purge": ("admin",),
    "create_key": ("admin",), "list_keys": ("admin",), "revoke_key": ("admin",),
    "audit": ("admin",),
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory, server_thread):
    data = tmp_path_factory.mktemp("secured")
    keys = KeyStore(data)
    tokens = {}
    for name, subscriber, roles in [
        ("admin", "operator", "admin"), ("a", "hospital-a", "process,store,receive"),
        ("b", "hospital-b", "process,store,receive"), ("reader", "hospital-a", "receive"),
        ("revoked", "hospital-a", "process,store,receive,admin"),
    ]:
        info, tokens[name] = keys.create(subscriber, roles)
        if name == "revoked":
            keys.revoke(info.key_id)
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=1, gpu_workers=0,
                          require_keys=True)
    with server_thread(config) as server:
        server.tokens = tokens
        server.backup_dir = tmp_path_factory.mktemp("backup")
        yield server


def _client(server, token):
    return Client(server.address, api_key=token, timeout=60)


def _own_image(server, who="a") -> str:
    with _client(server, server.tokens[who]) as c:
        return c.store.register(IMAGE + len(who)).image_id


def _call(server, name, token, image_id):
    """One minimal call of each RPC, as the given key."""
    with _client(server, token) as c:
        return {
            "process": lambda: c.process(f"id:{image_id}" if image_id else IMAGE,
                                         ["gaussian:sigma=1"]),
            "operations": lambda: c.operations(),
            "register": lambda: c.store.register(IMAGE * 3),
            "find": lambda: c.store.find(limit=5),
            "get": lambda: c.store.get(image_id),
            "preview": lambda: c.store.preview(image_id),
            "delete": lambda: c.store.delete(image_id),
            "verify": lambda: c.store.verify(),
            "backup": lambda: c.store.backup(str(server.backup_dir / f"b{image_id}")),
            "purge": lambda: c.store.purge(dry_run=True),
            "create_key": lambda: c.create_key("new-sub", "receive"),
            "list_keys": lambda: c.list_keys(),
            "revoke_key": lambda: c.revoke_key(c.list_keys()[0].key_id),
            "audit": lambda: c.audit(limit=5),
        }[name]()


def _code(fn):
    try:
        fn()
    except ServiceError as exc:
        return exc.code
    return grpc.StatusCode.OK


@pytest.mark.parametrize("name", sorted(ROLE_OF))
def test_without_a_key_or_with_a_revoked_key(secured, name):
    image_id = _own_image(secured)
    for token in ("", secured.tokens["revoked"], "mc_000000000000_" + "x" * 43, "nonsense"):
        code = _code(lambda t=token: _call(secured, name, t, image_id))
        assert code == grpc.StatusCode.UNAUTHENTICATED, (name, token[:6])


@pytest.mark.parametrize("name", sorted(ROLE_OF))
def test_wrong_role_and_right_role(secured, name):
    needed = ROLE_OF[name]
    right = "admin" if needed == ("admin",) else "a"
    image_id = _own_image(secured, "a")
    if needed == ("admin",):
        wrong = "a"
    elif needed is None:
        wrong = None
    else:
        wrong = "admin" if "receive" in needed else "reader"
    if wrong is not None:
        code = _code(lambda: _call(secured, name, secured.tokens[wrong], image_id))
        assert code == grpc.StatusCode.PERMISSION_DENIED, name
    if name == "revoke_key":
        # Revoke a key made for it, not one the other tests use.
        with _client(secured, secured.tokens["admin"]) as c:
            key = c.create_key("throwaway", "receive").key
            assert c.revoke_key(key.key_id).revoked_at > 0
        return
    assert _code(lambda: _call(secured, name, secured.tokens[right], image_id)) \
        == grpc.StatusCode.OK, name


@pytest.mark.parametrize("name", ["get", "preview", "delete", "process"])
def test_another_subscribers_id_is_not_found(secured, name):
    theirs = _own_image(secured, "b")
    code = _code(lambda: _call(secured, name, secured.tokens["a"], theirs))
    assert code == grpc.StatusCode.NOT_FOUND, name
    # ... exactly as an id that does not exist at all.
    missing = "0" * len(theirs)
    assert _code(lambda: _call(secured, name, secured.tokens["a"], missing)) \
        == grpc.StatusCode.NOT_FOUND
    with _client(secured, secured.tokens["b"]) as c:  # and b's image is untouched
        assert c.store.info(theirs).image_id == theirs


def test_find_sees_only_ones_own_images(secured):
    mine, theirs = _own_image(secured, "a"), _own_image(secured, "b")
    with _client(secured, secured.tokens["a"]) as c:
        ids = {i.image_id for i in c.store.find()}
    assert mine in ids and theirs not in ids


def test_revocation_takes_effect_on_the_running_server(secured):
    with _client(secured, secured.tokens["admin"]) as admin:
        reply = admin.create_key("late", "process")
        with _client(secured, reply.api_key) as late:
            assert late.process(IMAGE, ["gaussian:sigma=1"]).array.shape == IMAGE.shape
            admin.revoke_key(reply.key.key_id)
            with pytest.raises(ServiceError) as info:
                late.process(IMAGE, ["gaussian:sigma=1"])
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_usage_and_jobs_carry_the_calling_subscriber(secured):
    with _client(secured, secured.tokens["b"]) as c:
        r = c.process(IMAGE, ["gaussian:sigma=1"])
    assert r.usage["subscriber"] == "hospital-b"
    job = secured.call(secured.catalog.get_job(r.job_id))
    assert job.subscriber == "hospital-b"


def test_keys_and_audit_commands_through_a_running_server(secured):
    import json
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).parent / "medcompute")
    remote = ["--server", secured.address, "--api-key", secured.tokens["admin"]]

    def run(*args):
        return subprocess.run([exe, *args, *remote], capture_output=True, text=True,
                              timeout=120, check=True)

    token = run("keys", "create", "--subscriber", "by-cli", "--roles", "receive").stdout.strip()
    assert token.startswith("mc_")
    rows = json.loads(run("keys", "list", "--subscriber", "by-cli", "--json").stdout)
    assert [(r["subscriber"], r["roles"], r["revoked"]) for r in rows] == [
        ("by-cli", "receive", "")]
    assert f"revoked key {rows[0]['key_id']}" in run("keys", "revoke", rows[0]["key_id"]).stdout
    audit = json.loads(run("audit", "--action", "keys.revoke", "--format", "json").stdout)
    assert any(e["object_id"] == rows[0]["key_id"] and e["outcome"] == "OK" for e in audit)
    with _client(secured, token) as c, pytest.raises(ServiceError) as info:
        c.store.find(limit=1)
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
