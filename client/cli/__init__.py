"""The ``medcompute`` command line.

    medcompute serve [--address HOST:PORT] [--data-dir DIR] [--workers N] [--gpu-workers N]
                     [--scheduler ADDR] [--min-free MB|PERCENT]   (see server/serve.py)
    medcompute process INPUT... --op NAME[:key=value,...] [--op ...] -o OUTPUT [--json]
                                                                   (see process.py)
    medcompute submit INPUT... --op ... [--to SUBSCRIBER] [--key KEY]   (see jobs.py)
    medcompute watch|fetch|cancel JOB, jobs, inbox [--watch], deliveries ...
    medcompute usage [...], usage invoice --month YYYY-MM          (see usage.py)
    medcompute ops                                                  (see process.py)
    medcompute store put|find|get|info|rm|verify|backup|purge ...   (see store.py)
    medcompute dicom ae|rule|series ...                              (see dicom.py)
    medcompute keys create|list|revoke, audit                       (see admin.py)

Each command module adds its commands to the parser and imports only ``common`` and the
client library, never another command module; ``serve`` comes from the server's side,
through ``common.server_side``, the client's one import of the server.
"""

from __future__ import annotations

import argparse
import os
import sys

from medcompute.client import exits
from medcompute.client.calls import ServiceError
from medcompute.client.cli import (
    admin,
    capacity,
    dicom,
    jobs,
    process,
    store,
    studies,
    tiers,
    usage,
)
from medcompute.client.cli.common import client_options, parse_duration, server_side

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The ``medcompute`` parser: ``serve`` from the server's side, then each command
    module's commands."""
    parser = argparse.ArgumentParser(
        prog="medcompute",
        description="Image processing for medical images on a Dask cluster, over gRPC.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server_side().add_parser(sub, duration=parse_duration)
    process.add_commands(sub, client_options)
    jobs.add_commands(sub, client_options)
    usage.add_commands(sub, client_options)
    cmds = store.add_store_commands(sub, client_options)
    capacity.add_commands(cmds, client_options)
    tiers.add_commands(cmds, client_options)
    studies.add_commands(cmds, client_options)
    admin.add_commands(sub, client_options)
    dicom.add_commands(sub, client_options)
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """Each command's ``--help`` opens with the line its parent's listing gives it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest: a.help for a in action._choices_actions}
            for name, command in action.choices.items():
                if not command.description and listed.get(name):
                    command.description = listed[name][:1].upper() + listed[name][1:] + "."
                _describe(command)


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status (see medcompute.client.exits)."""
    parser = build_parser()
    exits.add_epilog(parser)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ServiceError as exc:
        print(f"medcompute {args.command}: {exc.code.name}: {exc.details}", file=sys.stderr)
        return exits.for_status(exc.code)
    except KeyboardInterrupt:
        return exits.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`medcompute ops | head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0

