"""What the DICOM node keeps in the catalog file: the calling AE titles an administrator
registered, the instances received over DICOM and the series they make up.

A calling AE title belongs to one subscriber and may call only from its registered host
or network: an IP address, a network in CIDR notation (10.0.4.0/24) or a host name
(resolved when it calls), never "any host" (see :mod:`.access`, which decides who may
call). Only administrators register calling AE titles.
Every instance received is a stored image of that subscriber (``ImageStore.register``);
the row here groups it into its series until the series is complete: no instance for
the quiet time, or (when so configured) its association released. A complete series is
registered as one stored volume and its instance images are removed.

UIDs are kept here, never written to logs.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from dataclasses import dataclass

from medcompute.server.errors import InvalidArgument, NotFound, shown_id
from medcompute.server.storage.db import Store, schema, table

__all__ = ["NodeRegistry", "CallingAE", "Series", "add_ae", "calling_ae", "check_ae_title",
           "check_address", "check_caller_host", "host_matches", "due", "finish_series",
           "forget_instances", "instances", "leftovers", "list_aes", "list_series",
           "mark_routed", "record_instance", "released", "remove_ae", "unrouted"]

_AE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")   # DICOM AE: 16 chars, no backslash
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                        r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")


def check_ae_title(value: str, field: str) -> str:
    """An AE title (1-16 characters of the default repertoire, no backslash), stripped."""
    title = value.strip()
    if not title or not _AE.match(title):
        raise InvalidArgument("expected 1 to 16 printable ASCII characters without a "
                              f"backslash, not all spaces; got {shown_id(value)}", field)
    return title


def check_address(host: str, port: int, field: str, whose: str) -> None:
    """A peer's host (``field.host``) and TCP port (``field.port``); ``whose`` names the peer
    in the message ("the node's")."""
    if not host or not _peer_host(host):
        raise InvalidArgument(f"expected {whose} host name or IP address", f"{field}.host")
    if not 1 <= port <= 65535:
        raise InvalidArgument(f"expected a TCP port 1 to 65535, got {port}", f"{field}.port")


def _peer_host(host: str) -> bool:
    """A host this server can connect to: an IP address or a host name (no wildcard)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOST_NAME.match(host))
    return True


def check_caller_host(value: str, field: str) -> str:
    """The host a calling AE may call from: an IP address, a network in CIDR notation
    (returned normalised: 10.0.4.7/24 is 10.0.4.0/24) or a host name; never a wildcard,
    the unspecified address or a network of every address."""
    host = value.strip()
    expected = ("expected the IP address, network (CIDR, such as 10.0.4.0/24) or host name "
                "the AE calls from")
    if not host:
        raise InvalidArgument(expected, field)
    if "/" in host:
        try:
            net = ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise InvalidArgument(f"{expected}; got {value!r}", field) from None
        if net.prefixlen == 0:
            raise InvalidArgument(f"{expected}; {value!r} is every address: name the "
                                  "scanner's own address or network", field)
        return str(net)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.match(host):
            raise InvalidArgument(f"{expected}; got {value!r} (any host, '*', is not "
                                  "allowed)" if "*" in host else f"{expected}; got {value!r}",
                                  field) from None
        return host
    if address.is_unspecified:
        raise InvalidArgument(f"{expected}; {value!r} is no one address", field)
    return str(address)


def host_matches(registered: str, address: str) -> bool:
    """Whether a caller at IP ``address`` is at the ``registered`` host: the address, in
    the network, or one the host name resolves to. A registration that is no host (the
    ``*`` earlier versions stored for a source) matches nothing."""
    try:
        caller = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(caller, ipaddress.IPv6Address) and caller.ipv4_mapped is not None:
        caller = caller.ipv4_mapped
    try:
        return caller in ipaddress.ip_network(registered, strict=False)
    except ValueError:
        pass
    if not _HOST_NAME.match(registered):
        return False
    try:
        return str(caller) in socket.gethostbyname_ex(registered)[2]
    except OSError:
        return False


@dataclass(frozen=True)
class CallingAE:
    ae_title: str
    subscriber: str
    host: str
    created_at: float


@dataclass(frozen=True)
class Series:
    owner: str
    series_uid: str
    calling_ae: str
    called_ae: str
    first_at: float
    last_at: float
    released: bool
    state: str                  # receiving | complete | failed
    image_id: str
    reason: str
    instances: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS dicom_calling_ae (
    ae_title   TEXT PRIMARY KEY,
    subscriber TEXT NOT NULL,
    host       TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dicom_series (
    owner      TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    calling_ae TEXT NOT NULL,
    called_ae  TEXT NOT NULL,
    first_at   REAL NOT NULL,
    last_at    REAL NOT NULL,
    released   INTEGER NOT NULL DEFAULT 0,
    state      TEXT NOT NULL DEFAULT 'receiving',
    image_id   TEXT NOT NULL DEFAULT '',
    reason     TEXT NOT NULL DEFAULT '',
    routed     INTEGER NOT NULL DEFAULT 0,
    kept       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, series_uid)
);
CREATE INDEX IF NOT EXISTS dicom_series_state ON dicom_series(state, last_at);
CREATE TABLE IF NOT EXISTS dicom_instance (
    owner       TEXT NOT NULL,
    series_uid  TEXT NOT NULL,
    sop_uid     TEXT NOT NULL,
    image_id    TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (owner, sop_uid)
);
CREATE INDEX IF NOT EXISTS dicom_instance_series ON dicom_instance(owner, series_uid);
"""

_SERIES_COLUMNS = ("s.owner, s.series_uid, s.calling_ae, s.called_ae, s.first_at, s.last_at, "
                   "s.released, s.state, s.image_id, s.reason, "
                   "CASE WHEN s.state = 'complete' THEN s.kept ELSE "
                   "(SELECT COUNT(*) FROM dicom_instance i WHERE i.owner = s.owner AND "
                   "i.series_uid = s.series_uid) END")


def _series(row) -> Series:
    return Series(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), row[7], row[8],
                  row[9], row[10])


#: The schema of this module's tables, applied by every Database (db.py).
create = table(schema(_SCHEMA))


# -- calling AE titles (administrators) -----------------------------------------------
def add_ae(tx, ae: CallingAE) -> None:
    """Register (or re-register) a calling AE title (checked by the caller)."""
    tx.execute("INSERT INTO dicom_calling_ae VALUES (?, ?, ?, ?) ON CONFLICT(ae_title) DO UPDATE "
               "SET subscriber = excluded.subscriber, host = excluded.host",
               (ae.ae_title, ae.subscriber, ae.host, ae.created_at))


def remove_ae(tx, title: str) -> bool:
    """False when no such title is registered."""
    return bool(tx.execute("DELETE FROM dicom_calling_ae WHERE ae_title = ?",
                           (title,)).rowcount)


def list_aes(tx, subscriber: str = "") -> list[CallingAE]:
    sql = "SELECT ae_title, subscriber, host, created_at FROM dicom_calling_ae"
    args: tuple = ()
    if subscriber:
        sql += " WHERE subscriber = ?"
        args = (subscriber,)
    return [CallingAE(*r) for r in tx.execute(sql + " ORDER BY ae_title", args)]


def calling_ae(tx, title: str) -> CallingAE | None:
    rows = tx.execute("SELECT ae_title, subscriber, host, created_at FROM dicom_calling_ae "
                      "WHERE ae_title = ?", (title.strip(),)).fetchall()
    return CallingAE(*rows[0]) if rows else None


# -- instances and series ---------------------------------------------------------------
def record_instance(tx, owner, series_uid, sop_uid, image_id, calling, called, now) -> None:
    """Add a received instance to its series (the series is receiving again); three
    statements, to run inside one transaction."""
    # Instances of a series that completed before are not part of the new batch.
    tx.execute(
        "DELETE FROM dicom_instance WHERE owner = ? AND series_uid = ? AND EXISTS ("
        "SELECT 1 FROM dicom_series WHERE owner = ? AND series_uid = ? AND "
        "state = 'complete')", (owner, series_uid, owner, series_uid))
    tx.execute(
        "INSERT INTO dicom_series (owner, series_uid, calling_ae, called_ae, first_at, "
        "last_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(owner, series_uid) DO UPDATE "
        "SET last_at = excluded.last_at, released = 0, state = 'receiving', routed = 0, "
        "reason = '', calling_ae = excluded.calling_ae, called_ae = excluded.called_ae",
        (owner, series_uid, calling, called, now, now))
    tx.execute(
        "INSERT INTO dicom_instance VALUES (?, ?, ?, ?, ?) ON CONFLICT(owner, sop_uid) "
        "DO UPDATE SET series_uid = excluded.series_uid, image_id = excluded.image_id, "
        "received_at = excluded.received_at",
        (owner, series_uid, sop_uid, image_id, now))


def released(tx, keys) -> None:
    """The association that sent these (owner, series UID) ended."""
    tx.executemany("UPDATE dicom_series SET released = 1 WHERE owner = ? AND "
                   "series_uid = ? AND state = 'receiving'", list(keys))


def due(tx, before: float, on_release: bool) -> list[Series]:
    """Receiving series quiet since ``before`` (or released, with ``on_release``)."""
    sql = (f"SELECT {_SERIES_COLUMNS} FROM dicom_series s WHERE s.state = 'receiving' AND "
           "(s.last_at < ?" + (" OR s.released = 1)" if on_release else ")") +
           " ORDER BY s.last_at")
    return [_series(r) for r in tx.execute(sql, (before,))]


def instances(tx, owner: str, series_uid: str) -> list[str]:
    """The image ids of a series' instances, in the order they arrived."""
    return [r[0] for r in tx.execute(
        "SELECT image_id FROM dicom_instance WHERE owner = ? AND series_uid = ? "
        "ORDER BY received_at, sop_uid", (owner, series_uid))]


def finish_series(tx, s: Series, image_id: str = "", reason: str = "") -> bool:
    """Mark a series complete (its volume's id) or failed (the reason); False when an
    instance arrived meanwhile (the series is receiving again)."""
    return bool(tx.execute(
        "UPDATE dicom_series SET state = ?, image_id = ?, reason = ?, kept = ? WHERE "
        "owner = ? AND series_uid = ? AND state = 'receiving' AND last_at = ?",
        ("failed" if reason else "complete", image_id, reason, s.instances, s.owner,
         s.series_uid, s.last_at)).rowcount)


def forget_instances(tx, owner: str, series_uid: str, image_ids) -> None:
    """Drop the rows of a complete series' instances (their images are removed)."""
    tx.executemany(
        "DELETE FROM dicom_instance WHERE owner = ? AND series_uid = ? AND image_id = ?",
        [(owner, series_uid, i) for i in image_ids])


def leftovers(tx) -> list[tuple[str, str, str, str]]:
    """(owner, series UID, image id, the series' volume id) of instances of complete
    series still present."""
    return tx.execute(
        "SELECT i.owner, i.series_uid, i.image_id, s.image_id FROM dicom_instance i "
        "JOIN dicom_series s ON s.owner = i.owner AND s.series_uid = i.series_uid "
        "WHERE s.state = 'complete'").fetchall()


def mark_routed(tx, s: Series) -> None:
    """The series' rules have started their jobs."""
    tx.execute("UPDATE dicom_series SET routed = 1 WHERE owner = ? AND series_uid = ? AND "
               "image_id = ?", (s.owner, s.series_uid, s.image_id))


def unrouted(tx) -> list[Series]:
    """Complete series whose rules have not (all) started their jobs."""
    return [_series(r) for r in tx.execute(
        f"SELECT {_SERIES_COLUMNS} FROM dicom_series s WHERE s.state = 'complete' AND "
        "s.routed = 0 ORDER BY s.last_at")]


def list_series(tx, owner: str) -> list[Series]:
    return [_series(r) for r in tx.execute(
        f"SELECT {_SERIES_COLUMNS} FROM dicom_series s WHERE s.owner = ? "
        "ORDER BY s.first_at", (owner,))]


class NodeRegistry(Store):
    """Calling AE titles, received instances and series, in the catalog file: a facade
    over this module's table functions, built on the server's shared Database or on a
    data directory (it then opens its own: the command line, the tests)."""

    TABLES = (create,)

    # -- calling AE titles (administrators) -------------------------------------------
    def add_ae_now(self, title: str, subscriber: str, host: str) -> CallingAE:
        """Register (or re-register) a calling AE title for ``subscriber`` from ``host``."""
        title = check_ae_title(title, "ae_title")
        if not subscriber:
            raise InvalidArgument("expected the subscriber the AE title sends for",
                                  "subscriber")
        host = check_caller_host(host, "host")
        ae = CallingAE(title, subscriber, host, time.time())
        self.db.run(add_ae, ae)
        return ae

    async def add_ae(self, title: str, subscriber: str, host: str) -> CallingAE:
        return await _to_thread(self.add_ae_now, title, subscriber, host)

    def remove_ae_now(self, title: str) -> None:
        title = check_ae_title(title, "ae_title")
        if not self.db.run(remove_ae, title):
            raise NotFound(f"no calling AE title {title!r} is registered", "ae_title")

    async def remove_ae(self, title: str) -> None:
        await _to_thread(self.remove_ae_now, title)

    def list_aes_now(self, subscriber: str = "") -> list[CallingAE]:
        return self.db.run(list_aes, subscriber)

    async def list_aes(self, subscriber: str = "") -> list[CallingAE]:
        return await self.db.read(list_aes, subscriber)

    def calling_ae(self, title: str) -> CallingAE | None:
        """The registration of a calling AE title (blocking: association threads call it)."""
        return self.db.run(calling_ae, title)

    # -- instances and series -----------------------------------------------------
    async def record_instance(self, owner: str, series_uid: str, sop_uid: str, image_id: str,
                              calling: str, called: str) -> None:
        """Add a received instance to its series (the series is receiving again)."""
        await _to_thread(self.db.transaction, record_instance, owner, series_uid, sop_uid,
                         image_id, calling, called, time.time())

    async def released(self, keys) -> None:
        """The association that sent these (owner, series UID) ended."""
        await _to_thread(self.db.transaction, released, list(keys))

    async def due(self, quiet: float, on_release: bool) -> list[Series]:
        """Receiving series that are complete now."""
        return await self.db.read(due, time.time() - quiet, on_release)

    async def instances(self, owner: str, series_uid: str) -> list[str]:
        """The image ids of a series' instances, in the order they arrived."""
        return await self.db.read(instances, owner, series_uid)

    async def finish_series(self, s: Series, *, image_id: str = "", reason: str = "") -> bool:
        """Mark a series complete (its volume's id) or failed (the reason); False when an
        instance arrived meanwhile (the series is receiving again)."""
        return await _to_thread(self.db.transaction, finish_series, s, image_id, reason)

    async def forget_instances(self, owner: str, series_uid: str, image_ids) -> None:
        """Drop the rows of a complete series' instances (their images are removed)."""
        await self.db.read(forget_instances, owner, series_uid, list(image_ids))

    async def leftovers(self) -> list[tuple[str, str, str, str]]:
        """(owner, series UID, image id, the series' volume id) of instances of complete
        series still present."""
        return await self.db.read(leftovers)

    async def mark_routed(self, s: Series) -> None:
        """The series' rules have started their jobs."""
        await self.db.read(mark_routed, s)

    async def unrouted(self) -> list[Series]:
        """Complete series whose rules have not (all) started their jobs."""
        return await self.db.read(unrouted)

    async def list_series(self, owner: str) -> list[Series]:
        return await self.db.read(list_series, owner)


async def _to_thread(fn, *args):
    import asyncio

    return await asyncio.to_thread(fn, *args)
