"""The configuration is a leaf, and its plain-data defaults suit the rooms that read them."""

from __future__ import annotations

import ast
import inspect

from medcompute.server import config
from medcompute.server.config import DEFAULT_VERSIONS, ServerConfig, VersionSpec
from medcompute.server.storage.studies import UNREAD, StatusRules
from medcompute.server.store import versions


def test_config_imports_nothing_of_the_server():
    tree = ast.parse(inspect.getsource(config))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("medcompute")]


def test_default_statuses_and_rules_are_valid_study_rules():
    cfg = ServerConfig()
    assert cfg.statuses[0] == UNREAD and cfg.status_rules == {}
    rules = StatusRules(cfg.statuses, cfg.status_rules)
    rules.check_config([v.name for v in cfg.versions])        # no ValueError
    assert rules.allowed(UNREAD) == ("*",)


def test_default_versions_are_what_parse_version_gives():
    assert ServerConfig().versions == DEFAULT_VERSIONS
    assert versions.VersionSpec is VersionSpec
    assert DEFAULT_VERSIONS == tuple(versions.parse_version(t) for t in
                                     ("lossless=lossless:archive", "review=10",
                                      "thumbnail=40"))
    assert [v.lossless for v in DEFAULT_VERSIONS] == [True, False, False]
