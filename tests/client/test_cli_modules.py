"""The shape of the command line: each command module of client/cli/ imports cli.common and
the client library only, never another command module, and is named in the import
contract that says so; the client reaches the server in one place."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "client" / "cli"
SHARED = {"__init__", "__main__", "common"}


def _command_modules() -> list[str]:
    return sorted(p.stem for p in CLI.glob("*.py") if p.stem not in SHARED)


def _imports(path: Path) -> set[str]:
    """The modules ``path`` imports from (``from M import x`` counts as M), and the
    submodules it imports of a package (``from medcompute.client.cli import store``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            out.add(node.module or "")
            if node.module == "medcompute.client.cli":
                out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_command_modules_import_only_common_of_the_cli():
    modules = _command_modules()
    assert {"admin", "dicom", "jobs", "process", "store", "usage"} <= set(modules)
    for name in modules:
        cli_imports = {m for m in _imports(CLI / f"{name}.py")
                       if m == "medcompute.client.cli" or m.startswith("medcompute.client.cli.")}
        assert cli_imports <= {"medcompute.client.cli.common"}, (name, cli_imports)


def test_the_independence_contract_names_every_command_module():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}
    assert contracts["cli"]["type"] == "independence"
    assert sorted(contracts["cli"]["modules"]) == [
        f"medcompute.client.cli.{name}" for name in _command_modules()]


def test_the_client_imports_the_server_once_lazily():
    found = []
    for path in (ROOT / "client").rglob("*.py"):
        tree = ast.parse(path.read_text())
        top_level = set(tree.body)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "medcompute.server"):
                found.append((path.relative_to(ROOT).as_posix(), node.module,
                              [a.name for a in node.names], node in top_level))
            elif isinstance(node, ast.Import) and any(
                    a.name.startswith("medcompute.server") for a in node.names):
                found.append((path.relative_to(ROOT).as_posix(), None, None, node in top_level))
    assert found == [("client/cli/common.py", "medcompute.server", ["serve"], False)]


def test_serve_comes_from_the_server_side():
    from medcompute.client.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    serve = sub.choices["serve"]
    assert serve.get_default("func").__module__ == "medcompute.server.serve"
    assert serve.get_default("func").__name__ == "run"
