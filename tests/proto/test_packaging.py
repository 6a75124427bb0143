"""The package builds without setuptools warnings and ships the .proto files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_builds_without_warnings_and_holds_the_protos(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v",
         "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    log = done.stdout + done.stderr
    assert "SetuptoolsDeprecationWarning" not in log
    assert "would be ignored" not in log
    assert "is absent from the `packages` configuration" not in log
    (wheel,) = tmp_path.glob("medcompute-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    protos = {p.name for p in (ROOT / "proto" / "medcompute" / "v1").glob("*.proto")}
    assert protos
    assert {f"medcompute/proto/medcompute/v1/{name}" for name in protos} <= names
