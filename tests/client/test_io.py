"""Output paths of the command line: the output's own folder is created, nothing above it;
a path whose parent's parent is missing is a usage error before any call."""

from __future__ import annotations

import pytest
from pydicom.data import get_testdata_file

from medcompute.client import exits
from medcompute.client.cli import main
from medcompute.client.io import check_output, make_folder, write_dicom

NOWHERE = "127.0.0.1:1"   # never called: the output path is refused first


def test_the_outputs_own_folder_is_created_and_nothing_above_it(tmp_path):
    check_output(tmp_path / "new" / "e.npy")
    check_output(tmp_path / "new")
    make_folder(tmp_path / "new")
    assert (tmp_path / "new").is_dir()
    with pytest.raises(ValueError, match="the folder .*missing does not exist"):
        check_output(tmp_path / "missing" / "dir" / "e.npy")
    with pytest.raises(ValueError, match="the folder .*missing does not exist"):
        make_folder(tmp_path / "missing" / "dir")
    with pytest.raises(ValueError, match="the folder .*missing does not exist"):
        write_dicom([b"x"], tmp_path / "missing" / "series")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("argv", [
    ["process", get_testdata_file("CT_small.dcm"), "--op", "gaussian:sigma=1", "-o", "{out}"],
    ["process", get_testdata_file("CT_small.dcm"), "--each", "--op", "gaussian:sigma=1",
     "-o", "{folder}"],
    ["submit", get_testdata_file("CT_small.dcm"), "--op", "gaussian:sigma=1", "--wait",
     "-o", "{out}"],
    ["fetch", "some-job", "-o", "{out}"],
    ["store", "get", "some-image", "-o", "{out}"],
    ["store", "get", "some-image", "-o", "{folder}"],
], ids=["process", "process --each", "submit --wait", "fetch", "store get .npy",
        "store get folder"])
def test_a_missing_parent_of_the_parent_is_a_usage_error(argv, tmp_path, capsys):
    out = tmp_path / "nonexistent" / "dir" / "e.npy"
    folder = tmp_path / "nonexistent" / "dir"
    argv = [a.format(out=out, folder=folder) for a in argv]
    assert main([*argv, "--server", NOWHERE]) == exits.USAGE
    err = capsys.readouterr().err
    assert f"the folder {tmp_path / 'nonexistent'} does not exist" in err, err
    assert not (tmp_path / "nonexistent").exists()
