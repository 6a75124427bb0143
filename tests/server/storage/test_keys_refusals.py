"""Every refusal of the API key store (storage/keys.py): the field it names and its words."""

from __future__ import annotations

import pytest

from medcompute.server.errors import InvalidArgument, NotFound
from medcompute.server.storage.keys import KeyStore

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def keys(tmp_path):
    store = KeyStore(tmp_path)
    yield store
    store.close()


@pytest.mark.parametrize("subscriber, roles, cert, field, words", [
    ("hospital-a", "process,admin-ish", "", "roles", "expected one or more of "),
    ("hospital-a", " , ", "", "roles", "got none"),
    ("-hospital", "process", "", "subscriber",
     "expected 1 to 64 letters, digits or . _ @ -, starting with a letter or digit"),
    ("h" * 65, "process", "", "subscriber", "expected 1 to 64 letters"),
    ("hospital-a", "process", "ab:cd", "certificate_sha256",
     "expected the SHA-256 of a certificate, 64 hex digits"),
])
def test_creating_a_key_refuses_bad_values(keys, subscriber, roles, cert, field, words):
    with pytest.raises(InvalidArgument) as info:
        keys.create(subscriber, roles, cert)
    assert info.value.field == field
    assert words in info.value.message, info.value.message
    assert keys.list() == []


def test_an_unknown_role_is_named(keys):
    with pytest.raises(InvalidArgument) as info:
        keys.create("hospital-a", ["process", "superuser"])
    assert info.value.message.endswith("got superuser")


def test_revoking_an_unknown_key_is_refused_with_its_id_cut(keys):
    with pytest.raises(NotFound) as info:
        keys.revoke("0123456789ab")
    assert info.value.field == "key_id"
    assert info.value.message == "no key with id '0123456789ab'"
    with pytest.raises(NotFound) as info:
        keys.revoke("k" * 100)
    assert "k" * 65 not in info.value.message
