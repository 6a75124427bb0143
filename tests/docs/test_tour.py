"""The tour: the README's and the docs' command blocks, run in order against a real server.

A tour block is a fenced block whose info string is exactly ``bash`` or ``python``; every
other block (indented, ``text``, ``console``, ...) is an example that needs what a test
machine has not (a PACS at 10.0.5.9, TLS certificates) and is not run. Each page's blocks
run in one ``bash -euo pipefail`` process, in a fresh folder, so a name a page uses and
does not define itself (a shell variable, a file) fails the test; a ``python`` block runs
as ``python -`` in the same process. A block made of ``medcompute serve ...`` lines alone
stands for "stop the server and start this one": the test restarts its server with those
options (on a free address and DICOM port) and the page's next blocks run in a new
shell. The tour's address, 127.0.0.1:50051, and DICOM port, 11112, are replaced by the
test server's.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.served import Served

ROOT = Path(__file__).resolve().parents[2]
# The tour, in the order a newcomer reads it: after subscribers.md every call needs a key.
PAGES = ["README.md", "docs/store.md", "docs/jobs.md", "docs/shared-memory.md",
         "docs/subscribers.md", "docs/dicom-node.md"]
# A fenced block, at the start of a line or indented in a list item.
_FENCE = re.compile(r"^([ \t]*)```([^\n`]*)\n(.*?)^\1```[ \t]*$", re.MULTILINE | re.DOTALL)

pytestmark = [pytest.mark.tour, pytest.mark.integration, pytest.mark.timeout(900)]


@dataclass
class Block:
    page: str
    line: int
    language: str
    text: str

    @property
    def serve_options(self) -> list[str] | None:
        """The options of a block that is ``medcompute serve ...`` alone, else None."""
        lines = [ln for ln in self.text.replace("\\\n", " ").splitlines()
                 if ln.strip() and not ln.strip().startswith("#")]
        if self.language != "bash" or not lines:
            return None
        if not all(ln.split()[:2] == ["medcompute", "serve"] for ln in lines):
            return None
        assert len(lines) == 1, f"{self.page}:{self.line}: one server per block"
        return shlex.split(lines[0], comments=True)[2:]


def tour_blocks(page: str) -> list[Block]:
    text = (ROOT / page).read_text()
    return [Block(page, text.count("\n", 0, m.start()) + 1, m.group(2).strip(),
                  textwrap.dedent(m.group(3)))
            for m in _FENCE.finditer(text) if m.group(2).strip() in ("bash", "python")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_args(options: list[str], dicom_port: int) -> list[str]:
    """A tour's serve options on the test's data folder and a free DICOM port."""
    args, skip = [], False
    for i, opt in enumerate(options):
        if skip:
            skip = False
            continue
        if opt in ("--data-dir", "--address"):
            skip = True
            continue
        args.append(opt)
        if opt == "--dicom-port" and i + 1 < len(options):
            args.append(str(dicom_port))
            skip = True
    return args


def _script(blocks: list[Block], address: str, dicom_port: int) -> str:
    parts = ["set -euo pipefail"]
    for block in blocks:
        text = block.text.replace("127.0.0.1:50051", address).replace("11112", str(dicom_port))
        parts.append(f"echo \">>> {block.page}:{block.line} (at ${{SECONDS}} s)\" >&2")
        if block.language == "python":
            parts.append(f"python - <<'TOUR_PYTHON_EOF'\n{text}TOUR_PYTHON_EOF")
        else:
            parts.append(text)
    return "\n".join(parts) + "\n"


def test_every_page_of_the_tour_has_blocks_and_no_tour_page_is_missing():
    for page in PAGES:
        assert tour_blocks(page), f"{page} has no tour block"


def test_the_tour_runs_in_order_against_a_real_server(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("MEDCOMPUTE_API_KEY", None)
    dicom_port = _free_port()
    server = Served(work / "data", tmp_path / "server.log")
    try:
        for page in PAGES:
            folder = work / Path(page).stem     # each page in a fresh folder of its own
            folder.mkdir()
            (folder / ".venv").symlink_to(work / ".venv")
            (folder / "data").symlink_to(work / "data")
            segment: list[Block] = []
            for block in [*tour_blocks(page), None]:
                options = block.serve_options if block is not None else None
                if block is not None and options is None:
                    segment.append(block)
                    continue
                if segment:
                    _run(segment, folder, env, server.address, dicom_port, tmp_path)
                    segment = []
                if options is not None:
                    server.stop()
                    server = Served(work / "data", tmp_path / "server.log",
                                    *_serve_args(options, dicom_port))
    finally:
        server.stop()


def _run(blocks, folder, env, address, dicom_port, tmp_path):
    done = subprocess.run(["bash", "-c", _script(blocks, address, dicom_port)], cwd=folder,
                          env={**env, "MEDCOMPUTE_SERVER": address}, capture_output=True,
                          text=True, timeout=600)
    print(done.stderr)      # the blocks' progress and times (shown with -s or on failure)
    if done.returncode != 0:
        log = (tmp_path / "server.log").read_text()[-3000:]
        pytest.fail(f"the tour failed (exit {done.returncode}) in the block started at the "
                    f"last '>>>' line:\n{done.stderr[-6000:]}\n--- stdout\n"
                    f"{done.stdout[-3000:]}\n--- server log\n{log}")
