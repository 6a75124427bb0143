"""Reading status of studies, and which versions each status may serve.

Domain code. A study (one subscriber's StudyInstanceUID) has a status: ``unread`` until
someone changes it, then any status of the operator's set (``--statuses``, default
``unread``, ``read``, ``archived``). Changes go through the API (StudyService) and are
audited like every call (the entry names an image of the study, never its UIDs).

The operator's rules (``--status-rule STATUS=VERSION,...``) say which versions a study
in that status may serve (``original`` names the files as registered, ``*`` every
version); a status without a rule serves every version, and there is no rule unless the
operator sets one: e.g. ``--status-rule unread=original,lossless`` serves lossy versions
only once a study is read. The store refuses any other version with FAILED_PRECONDITION
naming the status and what it allows.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from medcompute.server.errors import FailedPrecondition, InvalidArgument
from medcompute.server.storage.db import Database, Store, schema, table

__all__ = ["StatusRules", "StudyStatuses", "UNREAD", "all_statuses", "get", "parse_rule",
           "set_status"]

UNREAD = "unread"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS study_status (
    owner TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    status TEXT NOT NULL,
    changed_at REAL NOT NULL,
    changed_by TEXT NOT NULL,
    PRIMARY KEY (owner, study_uid)
);
"""


def parse_rule(text: str) -> tuple[str, tuple[str, ...]]:
    """``STATUS=VERSION[,VERSION...]`` (``*``: every version); ValueError otherwise."""
    status, sep, rest = text.partition("=")
    versions = tuple(v.strip() for v in rest.split(",") if v.strip())
    if not sep or not _NAME.match(status.strip()) or not versions:
        raise ValueError(f"expected STATUS=VERSION[,VERSION...] (e.g. unread=original,lossless),"
                         f" got {text!r}")
    return status.strip(), versions


@dataclass(frozen=True)
class StatusRules:
    """The operator's statuses (``ServerConfig.statuses``; they include ``unread``) and
    rules (``ServerConfig.status_rules``; none: every status serves every version)."""

    statuses: tuple[str, ...]
    rules: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def check_config(self, version_names: list[str]) -> None:
        """ValueError for a rule naming an unknown status or version."""
        for name in self.statuses:
            if not _NAME.match(name):
                raise ValueError(f"a status is lowercase letters, digits, - or _; got {name!r}")
        if UNREAD not in self.statuses:
            raise ValueError(f"the statuses must include {UNREAD!r}, every study's first")
        known = {"original", "*", *version_names}
        for status, versions in self.rules.items():
            if status not in self.statuses:
                raise ValueError(f"--status-rule {status}: not one of the statuses "
                                 f"({', '.join(self.statuses)})")
            for v in versions:
                if v not in known:
                    raise ValueError(f"--status-rule {status}: unknown version {v!r} "
                                     f"(known: {', '.join(sorted(known))})")

    def allowed(self, status: str) -> tuple[str, ...]:
        return self.rules.get(status, ("*",))

    def check(self, status: str, version: str) -> None:
        """FailedPrecondition unless a study in ``status`` may serve ``version``."""
        allowed = self.allowed(status)
        if "*" in allowed or version in allowed:
            return
        raise FailedPrecondition(f"the study is {status!r}, which serves only "
                                 f"{', '.join(allowed)}; version {version!r} is served once "
                                 "the study's status allows it", "version")

    def check_status(self, status: str, field_name: str = "status") -> str:
        if status not in self.statuses:
            raise InvalidArgument(f"expected one of {', '.join(self.statuses)}; got "
                                  f"{status[:32]!r}", field_name)
        return status


#: The schema of this module's tables, applied by every Database (db.py).
create = table(schema(_SCHEMA))


def get(tx, owner: str, study_uid: str) -> tuple[str, float, str]:
    """(status, unix seconds it was set (0: never), by whom)."""
    row = tx.execute("SELECT status, changed_at, changed_by FROM study_status WHERE "
                     "owner = ? AND study_uid = ?", (owner, study_uid)).fetchone()
    return tuple(row) if row else (UNREAD, 0.0, "")


def set_status(tx, owner: str, study_uid: str, status: str, by: str, at: float) -> str:
    """Set the status (checked by the caller); the one it had before. Run it inside a
    transaction (:meth:`Database.transaction`), so that the two statements are one."""
    was = get(tx, owner, study_uid)[0]
    tx.execute("INSERT INTO study_status (owner, study_uid, status, "
               "changed_at, changed_by) VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner, study_uid) "
               "DO UPDATE SET status = excluded.status, changed_at = excluded.changed_at, "
               "changed_by = excluded.changed_by",
               (owner, study_uid, status, at, by))
    return was


def all_statuses(tx) -> dict[tuple[str, str], str]:
    """Every study with a status set: (owner, study uid) -> status."""
    return {(o, u): s for o, u, s in
            tx.execute("SELECT owner, study_uid, status FROM study_status")}


class StudyStatuses(Store):
    """The status rows of one data directory's catalog file: a facade over this module's
    table functions, built on the server's shared Database or on a data directory (it
    then opens its own)."""

    TABLES = (create,)

    def __init__(self, data_dir: str | Path | Database, rules: StatusRules):
        super().__init__(data_dir)
        self.rules = rules

    async def get(self, owner: str, study_uid: str) -> tuple[str, float, str]:
        """(status, unix seconds it was set (0: never), by whom)."""
        return await self.db.read(get, owner, study_uid)

    async def set(self, owner: str, study_uid: str, status: str, *, by: str) -> str:
        """Set the status; the one it had before."""
        self.rules.check_status(status)
        return await asyncio.to_thread(self.db.transaction, set_status, owner, study_uid,
                                       status, by, time.time())

    async def all(self) -> dict[tuple[str, str], str]:
        """Every study with a status set: (owner, study uid) -> status."""
        return await self.db.read(all_statuses)

    async def check_read(self, owner: str, study_uid: str, version: str) -> str:
        """The study's status, or FailedPrecondition when it may not serve ``version``."""
        status = (await self.get(owner, study_uid))[0] if study_uid else UNREAD
        self.rules.check(status, version)
        return status
