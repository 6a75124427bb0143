"""buf guards the protos: lint (STANDARD), format, and breaking changes against the
committed v1 image. `make test` runs the same checks on the repository; these tests show
that each check catches what it is there for."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"


@pytest.fixture
def protos(tmp_path) -> Path:
    if not BUF.exists():
        pytest.skip("buf is installed by `make tools` (make test runs it)")
    copy = tmp_path / "proto"
    shutil.copytree(ROOT / "proto" / "medcompute", copy / "medcompute")
    for name in ("buf.yaml", "buf.image.binpb"):
        shutil.copy(ROOT / "proto" / name, copy / name)
    return copy


def _buf(where: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BUF), *args], cwd=where, capture_output=True, text=True,
                          timeout=60)


def test_the_protos_pass_lint_format_and_breaking(protos):
    for args in (("lint",), ("format", "--diff", "--exit-code"),
                 ("breaking", "--against", "buf.image.binpb")):
        run = _buf(protos, *args)
        assert run.returncode == 0, (args, run.stdout, run.stderr)


def test_breaking_catches_a_renamed_field(protos):
    path = protos / "medcompute" / "v1" / "image.proto"
    path.write_text(path.read_text().replace("repeated double spacing_mm = 4;",
                                             "repeated double spacing = 4;"))
    run = _buf(protos, "breaking", "--against", "buf.image.binpb")
    assert run.returncode != 0 and "spacing_mm" in run.stdout + run.stderr


def test_lint_catches_an_enum_value_without_its_prefix(protos):
    path = protos / "medcompute" / "v1" / "processing.proto"
    path.write_text(path.read_text().replace("DEVICE_CPU = 2;", "CPU = 2;"))
    run = _buf(protos, "lint")
    assert run.returncode != 0 and '"CPU"' in run.stdout + run.stderr
