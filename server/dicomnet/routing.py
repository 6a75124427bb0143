"""Routing rules: a complete received series that matches a rule runs as a job.

A rule belongs to the subscriber whose series it routes (an administrator creates it)
and holds the processing (a :class:`~medcompute.server.jobs.requests.ProcessRequest`
without its input), the output form and an inbox destination. When a series completes,
every matching rule submits one ordinary asynchronous job through the job runner
(metered, audited, listed in ``medcompute jobs``, run again after a crash), with the
series' stored volume as input and an idempotency key made of the rule and the volume,
so routing a series twice (a restart between completing it and recording its jobs)
starts no second job.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import pydicom
from pydicom.datadict import tag_for_keyword

from medcompute.server.dicomnet.registry import Series, check_ae_title
from medcompute.server.errors import InvalidArgument, MedcomputeError, NotFound, named, shown_id
from medcompute.server.jobs.requests import ProcessRequest, SubmitRequest
from medcompute.server.jobs.validate import check_template
from medcompute.server.storage.db import Store, schema, table
from medcompute.server.storage.keys import check_subscriber
from medcompute.server.storage.spool import ExpectedImage
from medcompute.server.store.images import ImageStore
from medcompute.server.worker.store_tasks import dicom_parts

__all__ = ["Rule", "RuleBook", "Router", "matches", "check_rule", "OUTPUT_FORMATS", "add_routed",
           "add_rule", "delete_rule", "jobs_of", "legacy_rules", "list_rules", "rewrite_rule"]

log = logging.getLogger(__name__)

#: What a rule's job returns: a derived series, or one DICOM file.
OUTPUT_FORMATS = ("dicom_series", "dicom_file")


@dataclass(frozen=True)
class Rule:
    """A routing rule: which series it matches, and the job it starts for each."""

    subscriber: str
    process: ProcessRequest                 # without its input: the series is
    calling_ae: str = ""
    called_ae: str = ""
    modality: str = ""
    series_description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    output: str = "dicom_series"            # one of OUTPUT_FORMATS
    destination: str = ""
    label: str = ""
    dicom_nodes: tuple[str, ...] = ()
    rule_id: str = ""
    created_at: float = 0.0

    def encode(self) -> bytes:
        data = dataclasses.asdict(dataclasses.replace(self, process=None))
        data["process"] = self.process.to_json()
        data["tags"] = dict(self.tags)
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def decode(cls, blob: bytes) -> Rule:
        data = json.loads(blob)
        return cls(**{**data, "process": ProcessRequest.from_json(data["process"]),
                      "dicom_nodes": tuple(data["dicom_nodes"])})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dicom_rule (
    rule_id    TEXT PRIMARY KEY,
    subscriber TEXT NOT NULL,
    created_at REAL NOT NULL,
    rule       BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dicom_routed (
    owner      TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    image_id   TEXT NOT NULL,
    rule_id    TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    PRIMARY KEY (image_id, rule_id)
);
CREATE INDEX IF NOT EXISTS dicom_routed_series ON dicom_routed(owner, series_uid);
"""


def _text(value) -> str:
    return str(value).strip().upper()


def _like(pattern: str, value) -> bool:
    want, got = _text(pattern), _text(value)
    return got.startswith(want[:-1]) if want.endswith("*") else got == want


def matches(rule: Rule, series: Series, attributes: Mapping[str, object]) -> bool:
    """Whether every non-empty match of ``rule`` holds for the series (pure)."""
    checks = [(rule.calling_ae, series.calling_ae), (rule.called_ae, series.called_ae),
              (rule.modality, attributes.get("Modality", "")),
              (rule.series_description, attributes.get("SeriesDescription", ""))]
    checks += [(want, attributes.get(keyword, "")) for keyword, want in rule.tags.items()]
    return all(_like(want, got) for want, got in checks if want)


def check_rule(rule: Rule) -> Rule:
    """``rule`` with its checked, normalised fields; InvalidArgument names one."""
    out = dataclasses.replace(rule, subscriber=check_subscriber(rule.subscriber,
                                                                "rule.subscriber"))
    for name in ("calling_ae", "called_ae"):
        if getattr(rule, name):
            out = dataclasses.replace(
                out, **{name: check_ae_title(getattr(rule, name), f"rule.{name}")})
    for keyword in rule.tags:
        if tag_for_keyword(keyword) is None:
            raise InvalidArgument(f"expected a DICOM keyword such as BodyPartExamined, got "
                                  f"{keyword!r}", "rule.tags")
    with named("rule.process"):
        check_template(rule.process)
    if rule.output not in OUTPUT_FORMATS:
        raise InvalidArgument(f"expected one of {', '.join(OUTPUT_FORMATS)}", "rule.output")
    if rule.destination:
        check_subscriber(rule.destination, "rule.destination")
    if len(rule.label) > 256:
        raise InvalidArgument("expected at most 256 characters", "rule.label")
    return out


#: The schema of this module's tables, applied by every Database (db.py).
create_tables = table(schema(_SCHEMA))


def add_rule(tx, rule: Rule) -> None:
    """Keep a checked rule (its id and time set)."""
    tx.execute("INSERT INTO dicom_rule VALUES (?, ?, ?, ?)",
               (rule.rule_id, rule.subscriber, rule.created_at, rule.encode()))


def delete_rule(tx, rule_id: str) -> bool:
    """False when there is no such rule."""
    return bool(tx.execute("DELETE FROM dicom_rule WHERE rule_id = ?", (rule_id,)).rowcount)


def list_rules(tx, subscriber: str = "") -> list[Rule]:
    """Every rule (of ``subscriber`` when given), oldest first."""
    sql, args = "SELECT rule FROM dicom_rule", ()
    if subscriber:
        sql, args = sql + " WHERE subscriber = ?", (subscriber,)
    return [Rule.decode(r[0]) for r in tx.execute(sql + " ORDER BY created_at", args)]


def legacy_rules(tx) -> list[tuple[str, bytes]]:
    """(rule id, blob) of the rules an earlier version kept in another form."""
    rows = tx.execute("SELECT rule_id, rule FROM dicom_rule").fetchall()
    return [(rule_id, bytes(blob)) for rule_id, blob in rows
            if not bytes(blob).startswith(b"{")]


def rewrite_rule(tx, rule_id: str, rule: Rule) -> None:
    tx.execute("UPDATE dicom_rule SET rule = ? WHERE rule_id = ?", (rule.encode(), rule_id))


def add_routed(tx, owner: str, series_uid: str, image_id: str, rule_id: str,
               job_id: str) -> None:
    """A rule started ``job_id`` for a series."""
    tx.execute("INSERT OR REPLACE INTO dicom_routed VALUES (?, ?, ?, ?, ?)",
               (owner, series_uid, image_id, rule_id, job_id))


def jobs_of(tx, owner: str) -> dict[str, list[tuple[str, str]]]:
    """Per series UID: (rule id, job id) of the jobs its rules started."""
    out: dict[str, list[tuple[str, str]]] = {}
    for series_uid, rule_id, job_id in tx.execute(
            "SELECT series_uid, rule_id, job_id FROM dicom_routed WHERE owner = ? "
            "ORDER BY rowid", (owner,)).fetchall():
        out.setdefault(series_uid, []).append((rule_id, job_id))
    return out


class RuleBook(Store):
    """The routing rules and the jobs they started, in the catalog file: a facade over
    this module's table functions, built on the server's shared Database or on a data
    directory (it then opens its own)."""

    TABLES = (create_tables,)

    async def create(self, rule: Rule, pushes=None) -> Rule:
        """Keep a checked rule; ``pushes`` (a PushBook) checks its DICOM nodes exist."""
        rule = check_rule(rule)
        recipient = rule.destination or rule.subscriber
        for i, name in enumerate(rule.dicom_nodes):
            if pushes is None or await pushes.node(recipient, name) is None:
                raise InvalidArgument(f"{recipient!r} has no DICOM node {shown_id(name)} (it "
                                      "registers its nodes with `medcompute dicom node add`)",
                                      f"rule.dicom_nodes[{i}]")
        rule = dataclasses.replace(rule, rule_id=uuid.uuid4().hex[:16], created_at=time.time())
        await self.db.read(add_rule, rule)
        return rule

    async def delete(self, rule_id: str) -> None:
        if not await self.db.read(delete_rule, rule_id):
            raise NotFound(f"no routing rule {shown_id(rule_id)}", "rule_id")

    async def list(self, subscriber: str = "") -> list[Rule]:
        return await self.db.read(list_rules, subscriber)

    async def upgrade(self, legacy) -> int:
        """Rewrite, as :meth:`Rule.encode` makes them, the rules an earlier version kept
        in another form (``legacy(blob)`` reads one: the API layer's); how many."""
        old = await self.db.read(legacy_rules)
        for rule_id, blob in old:
            await self.db.read(rewrite_rule, rule_id, legacy(blob))
        return len(old)

    async def routed(self, owner: str, series_uid: str, image_id: str, rule_id: str,
                     job_id: str) -> None:
        await self.db.read(add_routed, owner, series_uid, image_id, rule_id, job_id)

    async def jobs_of(self, owner: str) -> dict[str, list[tuple[str, str]]]:
        """Per series UID: (rule id, job id) of the jobs its rules started."""
        return await self.db.read(jobs_of, owner)


def _attributes(path: str, file_sizes) -> dict[str, str]:
    """The first instance's attributes (no pixel data), by keyword, as text."""
    first = dicom_parts(path, file_sizes[:1])[0]
    import io

    ds = pydicom.dcmread(io.BytesIO(first), stop_before_pixels=True, force=True)
    out = {}
    for element in ds.iterall():
        if element.keyword and element.VR not in ("SQ", "OB", "OW", "UN"):
            out.setdefault(element.keyword, str(element.value))
    return out


class Router:
    """Runs the matching rules of each complete series as jobs."""

    def __init__(self, rules: RuleBook, store: ImageStore, runner, registry, pushes=None,
                 audit=None):
        self.rules = rules
        self.audit = audit                # AuditLog: each job a rule starts is audited
        self.pushes = pushes              # PushBook
        self.store = store
        self.runner = runner              # JobRunner
        self.registry = registry

    async def route(self, series: Series) -> list[str]:
        """Submit one job per matching rule; the job ids."""
        rules = await self.rules.list(series.owner)
        if not rules:
            await self.registry.mark_routed(series)
            return []
        record = await self.store.get(series.image_id, owner=series.owner)
        blob = self.store.blobs.path(record.blob("dicom").digest)
        attributes = await asyncio.to_thread(_attributes, str(blob), record.file_sizes)
        jobs = []
        for rule in rules:
            if not matches(rule, series, attributes):
                continue
            series_image = ExpectedImage("input.image_id", "stored", 0, stored=record.id)
            process = dataclasses.replace(rule.process.with_images([series_image]),
                                          output_format=rule.output)
            submit = SubmitRequest(
                process, idempotency_key=f"dicom:{rule.rule_id}:{record.id}",
                destination=rule.destination, label=rule.label or f"dicom rule {rule.rule_id}")
            try:
                info, _ = await self.runner.submit(submit, _no_chunks(),
                                                   subscriber=series.owner)
            except MedcomputeError as exc:
                log.warning("dicom: routing rule %s could not start its job: %s",
                            rule.rule_id, exc.details)
                await self._audit(series, rule, "", exc.code_name, exc.details)
                await self.rules.routed(series.owner, series.series_uid, record.id,
                                        rule.rule_id, "")
                continue
            for name in rule.dicom_nodes if self.pushes is not None else ():
                await self.pushes.add_push(info.job_id, series.owner,
                                           rule.destination or series.owner, name)
            await self.rules.routed(series.owner, series.series_uid, record.id, rule.rule_id,
                                    info.job_id)
            await self._audit(series, rule, info.job_id, "OK", "")
            jobs.append(info.job_id)
        await self.registry.mark_routed(series)
        if jobs:
            log.info("dicom: a series from %s started %d job(s)", series.calling_ae, len(jobs))
        return jobs

    async def _audit(self, series: Series, rule, job_id: str, outcome: str, why: str) -> None:
        if self.audit is None:
            return
        detail = f"rule {rule.rule_id}, series from {series.calling_ae}" + (
            f": {why}" if why else "")
        try:
            await self.audit.record(series.owner, "dicom.route", job_id, outcome, detail)
        except Exception:       # the audit must not stop the routing
            log.exception("could not write the audit entry of a routed job")

    async def recover(self) -> None:
        """Route the series that completed but were not routed before a crash."""
        for series in await self.registry.unrouted():
            try:
                await self.route(series)
            except MedcomputeError as exc:
                log.warning("dicom: routing a received series failed: %s", exc.details)


async def _no_chunks():
    return
    yield  # an async generator without items: a stored input has no chunks
