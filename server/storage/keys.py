"""Subscribers' API keys, stored hashed in the catalog.

A key reads ``mc_<key id>_<secret>``. Only the SHA-256 of the secret is stored
(the secret has 256 bits of entropy, so a slow hash adds nothing); a presented key
is looked up by its id and its hash compared in constant time. Keys are read from
the database on every call, so a revocation takes effect at once, also on other
servers sharing the data directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from medcompute.server.errors import InvalidArgument, NotFound, Unauthenticated, shown_id
from medcompute.server.storage.db import Store, schema, table

__all__ = ["ROLES", "KeyInfo", "KeyStore", "Principal", "any_key", "check_subscriber", "insert",
           "list_keys", "lookup", "parse_roles", "revoke"]

ROLES = ("process", "store", "receive", "admin", "publisher")
_KEY = re.compile(r"^mc_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_SUBSCRIBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    subscriber TEXT NOT NULL,
    roles TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    certificate_sha256 TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS api_keys_subscriber ON api_keys (subscriber);
"""


@dataclass(frozen=True)
class Principal:
    """Who a call is made by: the subscriber its key belongs to, and the key's roles."""

    subscriber: str
    roles: frozenset[str]
    key_id: str = ""


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    subscriber: str
    roles: tuple[str, ...]
    created_at: float
    revoked_at: float | None = None
    certificate_sha256: str = ""

    @property
    def valid(self) -> bool:
        return self.revoked_at is None


def parse_roles(roles, field: str = "roles") -> tuple[str, ...]:
    """Roles from a list or a comma-separated string; InvalidArgument for unknown ones."""
    if isinstance(roles, str):
        roles = roles.split(",")
    out = tuple(dict.fromkeys(r.strip() for r in roles if r.strip()))
    unknown = [r for r in out if r not in ROLES]
    if unknown or not out:
        raise InvalidArgument(f"expected one or more of {', '.join(ROLES)}, got "
                              f"{', '.join(unknown) or 'none'}", field)
    return out


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(row) -> KeyInfo:
    key_id, subscriber, roles, cert, created, revoked = row
    return KeyInfo(key_id, subscriber, tuple(roles.split(",")), created, revoked, cert)


_COLUMNS = "key_id, subscriber, roles, certificate_sha256, created_at, revoked_at"


def check_subscriber(name: str, field: str = "subscriber") -> str:
    """``name`` if it is a valid subscriber name, else InvalidArgument."""
    if not _SUBSCRIBER.match(name or ""):
        raise InvalidArgument("expected 1 to 64 letters, digits or . _ @ -, starting with "
                              "a letter or digit", field)
    return name


#: The schema of this module's tables, applied by every Database (db.py).
create_tables = table(schema(_SCHEMA))


def insert(tx, info: KeyInfo, secret_sha256: str) -> None:
    """Store a new key (its secret only as the digest ``secret_sha256``)."""
    tx.execute("INSERT INTO api_keys (key_id, subscriber, roles, secret_sha256,"
               " certificate_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)",
               (info.key_id, info.subscriber, ",".join(info.roles), secret_sha256,
                info.certificate_sha256, info.created_at))


def lookup(tx, key_id: str) -> tuple | None:
    """The key's row: its KeyInfo columns (:data:`_COLUMNS`) and then its secret's digest."""
    return tx.execute(f"SELECT {_COLUMNS}, secret_sha256 FROM api_keys WHERE key_id = ?",
                      (key_id,)).fetchone()


def list_keys(tx, subscriber: str = "") -> list[KeyInfo]:
    """Every key (of ``subscriber`` when given), oldest first."""
    where, args = ("WHERE subscriber = ?", (subscriber,)) if subscriber else ("", ())
    return [_info(r) for r in tx.execute(
        f"SELECT {_COLUMNS} FROM api_keys {where} ORDER BY created_at", args).fetchall()]


def revoke(tx, key_id: str, at: float) -> tuple | None:
    """Revoke the key at ``at`` unless it was already; its row (:func:`lookup`), None
    when there is no such key."""
    tx.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
               (at, key_id))
    return lookup(tx, key_id)


def any_key(tx) -> bool:
    """Whether any key was ever created."""
    return tx.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None


class KeyStore(Store):
    """The API keys: a facade over this module's table functions, built on the server's
    shared Database or on a data directory (it then opens its own: the command line)."""

    TABLES = (create_tables,)

    def create(self, subscriber: str, roles, certificate_sha256: str = "") -> tuple[KeyInfo, str]:
        """A new key; returns its record and the token, which is never stored."""
        check_subscriber(subscriber)
        roles = parse_roles(roles)
        cert = certificate_sha256.lower().replace(":", "")
        if cert and not re.fullmatch(r"[0-9a-f]{64}", cert):
            raise InvalidArgument("expected the SHA-256 of a certificate, 64 hex digits",
                                  "certificate_sha256")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        info = KeyInfo(key_id, subscriber, roles, time.time(), None, cert)
        self.db.run(insert, info, _digest(secret))
        return info, f"mc_{key_id}_{secret}"

    async def authenticate(self, authorization: str, *, anonymous: str | None, form: str,
                           hint: str = "", certificate: Callable[[], str] | None = None
                           ) -> Principal:
        """The caller of a request whose ``Authorization`` value is ``authorization``, for
        every door: without one, the subscriber ``anonymous`` with every role while no key
        exists (None: keys are required); else the principal of its Bearer key.

        ``form`` names how a door takes the key (in its refusals, with ``hint`` after the
        first). ``certificate`` gives the SHA-256 of the caller's client certificate ("":
        none), for a key bound to one; None: the door takes no client certificates.
        """
        if not authorization:
            if anonymous is not None and not await asyncio.to_thread(self.any):
                return Principal(anonymous, frozenset(ROLES))
            raise Unauthenticated(f"no API key: send {form}{hint}")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(f"expected {form}")
        info = await self.verify(token.strip())
        if info is None:
            raise Unauthenticated("the API key is not valid (unknown, revoked or malformed)")
        if info.certificate_sha256 and certificate is None:
            raise Unauthenticated("this API key is bound to a client certificate; the HTTP "
                                  "door does not take client certificates: use the gRPC API "
                                  "or another key")
        if info.certificate_sha256 and info.certificate_sha256 != certificate():
            raise Unauthenticated("this API key is bound to a client certificate; connect "
                                  "with that certificate")
        return Principal(info.subscriber, frozenset(info.roles), info.key_id)

    async def verify(self, token: str) -> KeyInfo | None:
        """The key a token belongs to, if it is well-formed, known, matching and not revoked."""
        m = _KEY.match(token or "")
        if m is None:
            return None
        row = await self.db.read(lookup, m.group(1))
        if row is None:
            # Compare anyway, so that an unknown id takes as long as a wrong secret.
            hmac.compare_digest(_digest(m.group(2)), _digest(""))
            return None
        if not hmac.compare_digest(_digest(m.group(2)), row[6]):
            return None
        info = _info(row[:6])
        return info if info.valid else None

    def list(self, subscriber: str = "") -> list[KeyInfo]:
        return self.db.run(list_keys, subscriber)

    def revoke(self, key_id: str) -> KeyInfo:
        row = self.db.transaction(revoke, key_id, time.time())
        if row is None:
            raise NotFound(f"no key with id {shown_id(key_id)}", "key_id")
        return _info(row[:6])

    def any(self) -> bool:
        """Whether any key was ever created (then every call must present one)."""
        return self.db.run(any_key)
