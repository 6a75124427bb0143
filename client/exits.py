"""The exit statuses of the ``medcompute`` command line, the same for every command.

    0  OK
    1  a job did not succeed: it FAILED or was CANCELLED (watch, submit --wait), or
       cancel found it already ended otherwise
    2  usage error: bad arguments, an operation that does not parse, a local file that
       cannot be read or written (argparse's own errors exit 2 too)
    3  server error: the server refused or failed the call (INVALID_ARGUMENT,
       FAILED_PRECONDITION, RESOURCE_EXHAUSTED, INTERNAL ... any status not below)
    4  not found: an id the server does not know (NOT_FOUND)
    5  unreachable: no server answered in time (UNAVAILABLE, DEADLINE_EXCEEDED)
    6  not allowed: no or a wrong API key, or a role missing (UNAUTHENTICATED,
       PERMISSION_DENIED)
    7  a check found problems (store verify)
  130  interrupted (Ctrl-C)

A command that works on several items (store put, store rm) goes on after a failed one
and exits with the status of the first failure.
"""

from __future__ import annotations

import argparse

import grpc

__all__ = ["OK", "JOB_FAILED", "USAGE", "SERVER", "NOT_FOUND", "UNREACHABLE", "DENIED",
           "PROBLEMS", "INTERRUPTED", "EPILOG", "for_status", "add_epilog"]

OK, JOB_FAILED, USAGE, SERVER, NOT_FOUND, UNREACHABLE, DENIED, PROBLEMS = range(8)
INTERRUPTED = 130

EPILOG = """\
exit status: 0 ok; 1 a job failed or was cancelled; 2 usage error (arguments, local
files); 3 server error (the call was refused or failed); 4 not found; 5 server
unreachable or too slow; 6 not allowed (API key, role); 7 a check found problems
(store verify); 130 interrupted."""

_BY_CODE = {
    grpc.StatusCode.NOT_FOUND: NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE: UNREACHABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: UNREACHABLE,
    grpc.StatusCode.UNAUTHENTICATED: DENIED,
    grpc.StatusCode.PERMISSION_DENIED: DENIED,
}


def for_status(code: grpc.StatusCode) -> int:
    """The exit status of a call that failed with ``code``."""
    return _BY_CODE.get(code, SERVER)


def add_epilog(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every sub-command's parser the exit-status epilog."""
    parser.epilog = f"{parser.epilog}\n\n{EPILOG}" if parser.epilog else EPILOG
    if parser.formatter_class is argparse.HelpFormatter:
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                add_epilog(child)
