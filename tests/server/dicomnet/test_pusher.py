"""Tests of medcompute.server.dicomnet.pusher: the push leases a front end holds while it
sends, on a real catalog (both backends). The job runner is a fake (only its catalog's
runner id and lease length are read); the sending is an asyncio future the test ends."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from medcompute.server.dicomnet.push import Outcome, PushBook
from medcompute.server.dicomnet.pusher import Pusher

pytestmark = pytest.mark.timeout(60)


def _pusher(book: PushBook, owner: str, lease: float) -> Pusher:
    fake_runner = SimpleNamespace(catalog=SimpleNamespace(runner=owner, lease_seconds=lease))
    return Pusher(book, fake_runner, own_ae="MEDCOMPUTE", max_attempts=3, backoff=0.1)


def _row(book: PushBook):
    return book.db.run(lambda tx: tx.execute(
        "SELECT state, owner, lease_until, attempts FROM dicom_push").fetchone())


def test_a_front_end_renews_its_lease_while_it_sends_and_records_the_end(catalog_at):
    book = PushBook(catalog_at)
    try:
        async def main():
            host_a = _pusher(book, "a", 0.3)
            await book.add_push("j1", "alice", "bob", "viewer")
            [push] = await book.due()
            assert await book.claim(push.push_id, 1, "a", 0.3)
            first = _row(book)[2]
            sending = asyncio.get_running_loop().create_future()
            renewing = asyncio.create_task(host_a._renewing(push, sending))
            # Renewed while it sends: the lease moves on, and no one can take the push.
            while _row(book)[2] <= first:
                await asyncio.sleep(0.05)
            assert await book.take_over() == 0
            sending.set_result(Outcome(None, "", 5, "proof"))
            outcome = await renewing
            assert await host_a._end(push, "delivered", delivered=outcome.delivered,
                                     proof=outcome.proof)
            assert _row(book)[:2] == ("delivered", "a")
        asyncio.run(main())
    finally:
        book.close()


def test_a_front_end_whose_push_was_taken_over_does_not_record_its_end(catalog_at, caplog):
    book = PushBook(catalog_at)
    try:
        async def main():
            host_a, host_b = _pusher(book, "a", 30.0), _pusher(book, "b", 30.0)
            await book.add_push("j1", "alice", "bob", "viewer")
            [push] = await book.due()
            assert await book.claim(push.push_id, 1, "a", -1.0)    # its lease has run out
            await host_b._take_over()                              # host B, on its round
            assert _row(book)[0] == "pending"
            assert await book.claim(push.push_id, 2, "b", 30.0)
            # Host A's send goes on meanwhile: its renewal and its end are refused.
            sending = asyncio.get_running_loop().create_future()
            host_a.lease_seconds = 0.3
            renewing = asyncio.create_task(host_a._renewing(push, sending))
            while "was taken over by another front end" not in caplog.text:
                await asyncio.sleep(0.05)
            sending.set_result(Outcome(None, "", 5, "proof"))
            await renewing
            assert not await host_a._end(push, "delivered", delivered=5, proof="proof")
            assert "its outcome is not recorded" in caplog.text
            assert _row(book)[:2] == ("sending", "b")
            assert await host_b._end(push, "delivered", delivered=5, proof="proof")
            assert _row(book)[0] == "delivered" and _row(book)[3] == 2
        asyncio.run(main())
    finally:
        book.close()
