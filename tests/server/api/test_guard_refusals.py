"""Every refusal of the guard (api/guard.py): a call without a usable API key, without the
role it needs, or over the limits on jobs in progress. These are about the call, not a
request field: the errors name none."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.server.api.guard import Guard
from medcompute.server.config import ServerConfig
from medcompute.server.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from medcompute.server.storage.audit import AuditLog
from medcompute.server.storage.keys import KeyStore, Principal

pytestmark = pytest.mark.timeout(30)


class _Metadata:
    """Stand-in for grpc's ServicerContext: only what authenticate reads of a call (its
    metadata; no TLS, so no client certificate)."""

    def __init__(self, **metadata: str):
        self.metadata = tuple(metadata.items())

    def invocation_metadata(self):
        return self.metadata

    def auth_context(self):
        return {}


@pytest.fixture
def guard(tmp_path):
    keys, audit = KeyStore(tmp_path), AuditLog(tmp_path)
    guard = Guard(ServerConfig(data_dir=tmp_path, max_jobs_per_subscriber=1, max_queue=2),
                  keys, audit)
    yield guard
    keys.close()
    audit.close()


@pytest.mark.parametrize("metadata, words", [
    ({}, "no API key: send the metadata 'authorization: Bearer <key>' (medcompute --api-key "
         "or $MEDCOMPUTE_API_KEY)"),
    ({"authorization": "Basic dXNlcjpwdw=="},
     "expected the metadata 'authorization: Bearer <key>'"),
    ({"authorization": "Bearer "}, "expected the metadata 'authorization: Bearer <key>'"),
    ({"authorization": "Bearer mc_000000000000_" + "x" * 43},
     "the API key is not valid (unknown, revoked or malformed)"),
])
def test_a_call_without_a_valid_key_is_unauthenticated(guard, metadata, words):
    guard.keys.create("hospital-a", "process")    # once a key exists, every call needs one
    with pytest.raises(Unauthenticated) as caught:
        asyncio.run(guard.authenticate(_Metadata(**metadata)))
    assert caught.value.field is None and caught.value.message == words


def test_a_revoked_key_is_unauthenticated(guard):
    info, token = guard.keys.create("hospital-a", "process")
    assert asyncio.run(guard.authenticate(_Metadata(authorization=f"Bearer {token}"))) == \
        Principal("hospital-a", frozenset({"process"}), info.key_id)
    guard.keys.revoke(info.key_id)
    with pytest.raises(Unauthenticated, match="not valid"):
        asyncio.run(guard.authenticate(_Metadata(authorization=f"Bearer {token}")))


def test_a_call_without_its_role_is_permission_denied():
    reader = Principal("hospital-a", frozenset({"receive", "store"}))
    with pytest.raises(PermissionDenied) as caught:
        Guard.authorize(reader, ("process", "admin"))
    assert caught.value.field is None
    assert caught.value.message == ("this call needs the process or admin role; the key has "
                                    "receive, store")
    with pytest.raises(PermissionDenied, match="the key has none"):
        Guard.authorize(Principal("b", frozenset()), "admin")


def test_jobs_over_a_subscribers_limit_then_over_the_queue(guard):
    a, b, c = (Principal(name, frozenset({"process"})) for name in "abc")
    guard.acquire(a, stream=False, job=True)
    with pytest.raises(ResourceExhausted) as caught:
        guard.acquire(a, stream=False, job=True)
    assert caught.value.field is None
    assert caught.value.message == (
        "1 jobs of this subscriber are in progress, its limit (max_jobs_per_subscriber=1); "
        "retry when one has finished")
    guard.acquire(b, stream=False, job=True)
    with pytest.raises(ResourceExhausted) as caught:
        guard.acquire(c, stream=False, job=True)
    assert caught.value.message == "the server's queue is full (2 jobs, max_queue=2); retry shortly"
    guard.release(a, stream=False, job=True)      # a place is free again
    guard.acquire(c, stream=False, job=True)
