"""Regenerate the Python stubs in proto/v1 from proto/medcompute/v1/*.proto.

    python -m medcompute.proto.generate            # rewrite proto/v1
    python -m medcompute.proto.generate --out DIR  # write elsewhere (the staleness test)

protoc names modules after the .proto paths (``medcompute.v1.image_pb2``); the
stubs live in ``medcompute.proto.v1``, so their imports are rewritten to that.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "medcompute" / "v1"
DEFAULT_OUT = HERE / "v1"
_IMPORT = re.compile(r"^from medcompute\.v1 import ", re.MULTILINE)


def generate(out: Path) -> list[Path]:
    """Compile every .proto into ``out`` and return the files written."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(SOURCES.glob("*.proto"))
    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{HERE}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *[str(p.relative_to(HERE)) for p in protos],
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        written = []
        out.mkdir(parents=True, exist_ok=True)
        for src in sorted((Path(tmp) / "medcompute" / "v1").iterdir()):
            text = _IMPORT.sub("from medcompute.proto.v1 import ", src.read_text())
            dest = out / src.name
            dest.write_text(text)
            written.append(dest)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
