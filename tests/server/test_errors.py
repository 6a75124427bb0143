"""Domain errors (server/errors.py): ids repeated in messages are cut."""

import doctest

from medcompute.server import errors
from medcompute.server.errors import SHOWN_ID_CHARS, NotFound, shown_id


def test_a_long_id_is_cut_in_a_message():
    long_id = "a" * 10_000
    shown = shown_id(long_id)
    assert shown == repr("a" * SHOWN_ID_CHARS) + "…"
    assert len(NotFound(f"no job {shown}", "job_id").details) < 100
    assert shown_id("f" * SHOWN_ID_CHARS) == repr("f" * SHOWN_ID_CHARS)


def test_the_examples_run():
    assert doctest.testmod(errors).failed == 0
