"""The log of examinations fetched (storage/fetches.py), counted per subscriber."""

import asyncio

from medcompute.server.storage.fetches import FetchLog, examination_of


def test_an_examination_is_a_study_of_its_owner_or_a_lone_image():
    assert examination_of("a", "img1", "1.2.3") == examination_of("a", "img2", "1.2.3")
    assert examination_of("a", "img1", "1.2.3") != examination_of("b", "img1", "1.2.3")
    assert examination_of("a", "img1", "") != examination_of("a", "img2", "")
    # Kept as a digest: the study's UID is not in the row.
    assert "1.2.3" not in examination_of("a", "img1", "1.2.3")


def test_distinct_examinations_per_subscriber_in_the_window(catalog_at):
    log = FetchLog(catalog_at)

    async def scenario():
        study = examination_of("owner", "i1", "1.2.3")
        await log.add("a", "i1", study, at=100)
        await log.add("a", "i2", study, at=150)                 # same examination
        await log.add("a", "i3", examination_of("owner", "i3", ""), at=199)
        await log.add("a", "i4", examination_of("owner", "i4", ""), at=200)  # outside
        await log.add("b", "i1", study, at=120)
        return (await log.examinations(None, 100, 200),
                await log.examinations("b", 100, 200),
                await log.examinations("a", 0, 100))

    try:
        everyone, only_b, before = asyncio.run(scenario())
    finally:
        log.close()
    assert everyone == {"a": 2, "b": 1}
    assert only_b == {"b": 1} and before == {}


def test_the_table_functions_count_distinct_examinations(catalog_at):
    from medcompute.server.storage import fetches
    from medcompute.server.storage.db import Database

    db = Database(catalog_at)
    try:
        db.transaction(fetches.add, "a", 100.0, "i1", "e1")
        db.transaction(fetches.add, "a", 110.0, "i2", "e1")
        db.transaction(fetches.add, "b", 120.0, "i3", "e2")
        assert db.run(fetches.examinations, None, 100.0, 200.0) == {"a": 1, "b": 1}
        assert db.run(fetches.examinations, "b", 0.0, 200.0) == {"b": 1}
        assert db.run(fetches.examinations, None, 0.0, 100.0) == {}
    finally:
        db.close()
