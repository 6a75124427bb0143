"""Every refusal the service can give a caller is triggered by a test (tests/refusal_coverage.py
says how a refusal counts as tested, and lists the ones that are not)."""

from __future__ import annotations

from tests import refusal_coverage as coverage


def test_every_refusal_in_server_has_a_test_that_triggers_it():
    missing = coverage.untested()
    listed = "\n".join(f"{r.path}:{r.line}: {r.error}: {r.piece!r}" for r in missing)
    assert not missing, (
        f"{len(missing)} refusal(s) in server/ whose message no test holds; write a test that "
        f"triggers each and checks its code, field and message:\n{listed}")


def test_the_allow_list_names_only_refusals_that_exist_and_are_untested():
    keys = {r.key: r for r in coverage.refusals()}
    text = coverage.test_text()
    stale = [k for k in coverage.ALLOWED if k not in keys]
    assert stale == [], f"ALLOWED names refusals that are no longer in server/: {stale}"
    tested = [k for k in coverage.ALLOWED if keys[k].tested_in(text)]
    assert tested == [], f"ALLOWED names refusals a test now triggers; remove them: {tested}"


def test_an_untested_refusal_is_found(tmp_path):
    """The scan itself: a refusal written into a scratch tree is listed until a test holds it."""
    (tmp_path / "server").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "server" / "thing.py").write_text(
        "from medcompute.server.errors import InvalidArgument\n"
        "def check(x):\n"
        "    if x < 0:\n"
        "        raise InvalidArgument(f'must be zero or more, got {x}', 'thing.x')\n")
    [found] = coverage.untested(tmp_path)
    assert (found.path, found.error, found.piece) == ("server/thing.py", "InvalidArgument",
                                                      "must be zero or more, got")
    (tmp_path / "tests" / "test_thing.py").write_text("# 'must be zero or more, got'\n")
    assert coverage.untested(tmp_path) == []
