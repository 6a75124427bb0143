"""Which refusals in server/ no test triggers.

A *refusal* is a ``raise`` of one of the domain errors a caller can be given
(server/errors.py: InvalidArgument, NotFound, FailedPrecondition, ...). A refusal counts as
tested when a test file under tests/ contains one literal piece of its message whole, or five
words of it in a row (the text a test that triggers it checks). Run it to list the untested ones::

    python tests/refusal_coverage.py            # untested refusals, one a line
    python tests/refusal_coverage.py --all      # every refusal with where its test is

``tests/test_refusal_coverage.py`` runs the same scan in ``make test`` and fails on an
untested refusal that is not in :data:`ALLOWED` (each entry there says why).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: The errors a caller can be given; Internal and StorageFailure are the service's own faults.
REFUSALS = frozenset({
    "InvalidArgument", "NotFound", "FailedPrecondition", "AlreadyExists", "Aborted",
    "ResourceExhausted", "StorageFull", "Unauthenticated", "PermissionDenied",
    "Cancelled", "DeadlineExceeded", "Unavailable",
})

#: Shortest literal piece that identifies a message; shorter ones match too much.
MIN_PIECE = 10

#: Words of a message in a row that a test must hold (fewer match unrelated tests).
RUN_OF_WORDS = 5

#: Untested refusals accepted on purpose: "path:text" (the longest piece of the message, as
#: the script prints it) -> why no test can trigger it.
ALLOWED: dict[str, str] = {
    "server/dicomweb/processed.py:succeeded but its derived series is no longer stored "
    "(deleted meanwhile); ask again":
        "the derived series is looked up right after its job succeeded, which kept it; only "
        "a deletion by its subscriber in between (a race no test can order) leaves it absent",
    "server/dicom/read.py:the compressed data does not match Rows/Columns":
        "pydicom's decoders (RLE, JPEG, JPEG-LS, JPEG 2000) check a frame's size themselves "
        "and fail first ('could not be decoded'); a guard against another decoder plug-in",
    "server/dicom/read.py:frames; the file is damaged":
        "pydicom reads an empty or unreadable NumberOfFrames as 1 before this check; a guard "
        "against another pydicom version",
    "server/dicom/volume.py:could not be read; re-export the file":
        "under the validation mode the service reads with, pydicom accepts every malformed "
        "value tried (bad DS text, odd-length US, garbage sequence bytes); a guard against "
        "another pydicom version",
    "server/dicomnet/ingress.py:SeriesInstanceUID (0020,000E) or SOPInstanceUID (0008,0018) "
    "is missing in the instance kept before":
        "only an instance an earlier version kept without its UIDs; the one instance "
        "validator (dicom/instance.py) refuses such an instance before it is kept",
    "server/worker/version_tasks.py:from the stored values; no lossless version of this "
    "image":
        "guards against an OpenJPEG fault: pydicom trims stored values to BitsStored, and "
        "lossless JPEG 2000 came back exact for every bit depth and sign tried",
}


@dataclasses.dataclass(frozen=True)
class Refusal:
    path: str
    line: int
    error: str
    piece: str
    pieces: tuple[str, ...] = ()

    def tested_in(self, text: str) -> bool:
        """Whether ``text`` (the tests' source) holds a piece of the message whole, or
        :data:`RUN_OF_WORDS` of its words in a row."""
        for piece in self.pieces:
            if piece in text:
                return True
            words = piece.split()
            n = RUN_OF_WORDS
            if any(" ".join(words[i:i + n]) in text for i in range(len(words) - n + 1)):
                return True
        return False

    @property
    def key(self) -> str:
        return f"{self.path}:{self.piece}"


def _pieces(node: ast.expr) -> list[str]:
    """The literal text pieces of a message expression (a string, an f-string, a concatenation)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _pieces(node.left) + _pieces(node.right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return _pieces(node.left)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"):
        return _pieces(node.func.value)
    return []


def _cleaned(pieces: list[str]) -> list[str]:
    # stripped of the punctuation an f-string leaves at its seams; short pieces match too much
    cleaned = (p.strip(" :;,.'\"()[]{}") for p in pieces)
    return [p for p in cleaned if len(p) >= MIN_PIECE]


def refusals(root: pathlib.Path = ROOT) -> list[Refusal]:
    found = []
    for path in sorted((root / "server").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or not isinstance(node.exc, ast.Call):
                continue
            func = node.exc.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in REFUSALS or not node.exc.args:
                continue
            pieces = _cleaned(_pieces(node.exc.args[0]))
            if not pieces:
                continue  # a message built elsewhere, or too short to identify
            found.append(Refusal(str(path.relative_to(root)), node.lineno, name,
                                 max(pieces, key=len), tuple(pieces)))
    return found


def test_text(root: pathlib.Path = ROOT) -> str:
    return "\n".join(p.read_text() for p in sorted((root / "tests").rglob("*.py"))
                     if p.name != "refusal_coverage.py")


def untested(root: pathlib.Path = ROOT) -> list[Refusal]:
    text = test_text(root)
    return [r for r in refusals(root) if not r.tested_in(text) and r.key not in ALLOWED]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="list every refusal, tested or not")
    args = parser.parse_args(argv)
    text = test_text()
    every = refusals()
    missing = [r for r in every if not r.tested_in(text) and r.key not in ALLOWED]
    for r in every if args.all else missing:
        mark = "untested" if r in missing else "tested"
        print(f"{r.path}:{r.line}: {r.error}: {r.piece!r} ({mark})")
    print(f"{len(every)} refusals, {len(missing)} untested, {len(ALLOWED)} allowed",
          file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
