"""dciodvfy (dicom3tools, installed by ``make dicom3tools``): the standard's IOD validator,
run over DICOM files the tests make, and compared with what their input already had.

``new_errors(output, inputs)`` is what a conformance test asserts empty: the errors of
`output` that none of `inputs` had, after normalising away the values and item numbers a
message quotes (a derived file is compared message for message with its source)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass


def program() -> str:
    """The path of dciodvfy; `make dicom3tools` installs it."""
    found = shutil.which("dciodvfy") or next(
        (f"{d}/dciodvfy" for d in ("/usr/bin", "/usr/local/bin")
         if os.access(f"{d}/dciodvfy", os.X_OK)), None)
    if found is None:
        raise RuntimeError("dciodvfy is not installed: run `make dicom3tools`")
    return found


@dataclass(frozen=True)
class Report:
    """What dciodvfy said of one file: its IOD, its errors and warnings (normalised)."""

    iod: str
    errors: frozenset[str]
    warnings: frozenset[str]
    text: str


def normalise(message: str) -> str:
    """A message without what differs between two files with the same fault: quoted
    values, item and value numbers, and spacing."""
    message = re.sub(r"\s=\s*<[^>]*>", " =<>", message)
    message = re.sub(r"\[\d+\]", "[]", message)
    message = re.sub(r"\b(value|item|frame)\s+\d+", r"\1 #", message, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", message).strip()


def check(data: bytes, *, timeout: float = 120) -> Report:
    """Run dciodvfy over one Part 10 file given as bytes."""
    with tempfile.NamedTemporaryFile(suffix=".dcm") as f:
        f.write(bytes(data))
        f.flush()
        done = subprocess.run([program(), f.name], capture_output=True, text=True,
                              errors="replace", timeout=timeout, check=False)
    text = done.stdout + done.stderr
    errors, warnings, iod = set(), set(), ""
    for line in text.splitlines():
        if line.startswith("Error"):
            errors.add(normalise(line))
        elif line.startswith("Warning"):
            warnings.add(normalise(line))
        elif line and not line.startswith((" ", "\t")) and re.fullmatch(r"\w+", line.strip()):
            iod = iod or line.strip()
    return Report(iod, frozenset(errors), frozenset(warnings), text)


def new_errors(output: bytes, inputs: Iterable[bytes] = ()) -> set[str]:
    """The errors of `output` that none of `inputs` had."""
    had: set[str] = set()
    for data in inputs:
        had |= check(data).errors
    return set(check(output).errors) - had
