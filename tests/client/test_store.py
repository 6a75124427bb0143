"""The client's store calls: how received chunks become files."""

import os

import pytest

from medcompute.client.store import _files

DATA = os.urandom(5000)
SIZES = [1000, 1500, 0, 2500]


def _cut(lengths):
    pieces, at = [], 0
    for n in lengths:
        pieces.append(DATA[at:at + n])
        at += n
    return pieces


@pytest.mark.parametrize("lengths", [[5000], [1000, 1500, 2500], [700, 700, 3600],
                                     [1, 4999], [1000, 4000], [2500, 2500]])
def test_pieces_cut_anywhere_give_back_the_files(lengths):
    files = _files(_cut(lengths), SIZES)
    assert [len(f) for f in files] == SIZES
    assert b"".join(files) == DATA
    assert all(isinstance(f, bytes) for f in files)


def test_a_file_that_came_in_one_piece_is_that_piece():
    pieces = _cut([1000, 1500, 2500])
    files = _files(pieces, SIZES)
    assert files[0] is pieces[0] and files[1] is pieces[1] and files[3] is pieces[2]
