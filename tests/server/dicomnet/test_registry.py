"""The DICOM node's registry on a real SQLite file: calling AE titles, and the grouping
of received instances into series that complete when quiet or released."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

from medcompute.server.dicomnet.registry import (
    NodeRegistry,
    check_address,
    check_ae_title,
    check_caller_host,
    host_matches,
)
from medcompute.server.errors import InvalidArgument, NotFound

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def registry(tmp_path):
    r = NodeRegistry(tmp_path)
    yield r
    r.close()


@pytest.mark.parametrize("bad", ["", "   ", "A" * 17, "BACK\\SLASH", "TAB\tAE", "É"])
def test_ae_titles_are_checked(bad):
    with pytest.raises(InvalidArgument, match="16 printable ASCII") as err:
        check_ae_title(bad, "ae_title")
    assert err.value.field == "ae_title"


def test_calling_aes_are_registered_replaced_and_removed(registry):
    registry.add_ae_now(" CT1 ", "st-mary", "10.0.0.5")
    assert registry.calling_ae("CT1").host == "10.0.0.5"
    registry.add_ae_now("CT1", "st-mary", "10.0.0.6")
    assert [(a.ae_title, a.host) for a in registry.list_aes_now()] == [("CT1", "10.0.0.6")]
    assert registry.list_aes_now("other") == []
    with pytest.raises(InvalidArgument, match="host"):
        registry.add_ae_now("CT2", "st-mary", "")
    with pytest.raises(InvalidArgument, match="subscriber"):
        registry.add_ae_now("CT2", "", "10.0.0.5")
    registry.remove_ae_now("CT1")
    assert registry.calling_ae("CT1") is None
    with pytest.raises(NotFound, match="no calling AE title 'CT1'"):
        registry.remove_ae_now("CT1")


def test_series_complete_when_quiet_or_released(registry):
    async def scenario():
        await registry.record_instance("s", "1.2.3", "1.2.3.1", "img1", "CT1", "MC")
        await registry.record_instance("s", "1.2.3", "1.2.3.2", "img2", "CT1", "MC")
        await registry.record_instance("s", "1.2.4", "1.2.4.1", "img3", "CT1", "MC")
        assert await registry.due(3600, on_release=False) == []
        await registry.released([("s", "1.2.3")])
        (due,) = await registry.due(3600, on_release=True)
        assert (due.series_uid, due.instances) == ("1.2.3", 2)
        assert {s.series_uid for s in await registry.due(0, on_release=False)} == {
            "1.2.3", "1.2.4"}
        assert await registry.instances("s", "1.2.3") == ["img1", "img2"]
        # An instance arriving after the series was read for completion wins.
        await asyncio.sleep(0.01)
        await registry.record_instance("s", "1.2.3", "1.2.3.3", "img4", "CT1", "MC")
        assert not await registry.finish_series(due, image_id="vol")
        (due,) = [s for s in await registry.due(0, False) if s.series_uid == "1.2.3"]
        assert await registry.finish_series(due, image_id="vol")
        assert sorted(await registry.leftovers()) == [("s", "1.2.3", i, "vol")
                                              for i in ("img1", "img2", "img4")]
        await registry.forget_instances("s", "1.2.3", ["img1", "img2", "img4"])
        assert await registry.leftovers() == []
        (done,) = [s for s in await registry.list_series("s") if s.series_uid == "1.2.3"]
        assert (done.state, done.image_id) == ("complete", "vol")
        assert await registry.list_series("other") == []
    asyncio.run(scenario())


@pytest.mark.parametrize("host, port, field, message", [
    ("", 104, "host", "expected the node's host name or IP address"),
    ("pacs .example", 104, "host", "expected the node's host name or IP address"),
    ("pacs", 0, "port", "expected a TCP port 1 to 65535, got 0"),
    ("pacs", 65536, "port", "expected a TCP port 1 to 65535, got 65536"),
])
def test_a_node_or_source_address_is_checked_and_nothing_is_kept(tmp_path, host, port, field,
                                                                   message):
    from medcompute.server.dicomnet.collect import SourceBook
    from medcompute.server.dicomnet.push import PushBook

    pushes, sources = PushBook(tmp_path), SourceBook(tmp_path)
    try:
        with pytest.raises(InvalidArgument) as err:
            asyncio.run(pushes.add_node("st-mary", "pacs", "PACS", host, port))
        assert (err.value.field, err.value.message) == (f"node.{field}", message)
        with pytest.raises(InvalidArgument) as err:
            asyncio.run(sources.add("st-mary", "pacs", "PACS", host, port, "move"))
        assert err.value.field == f"source.{field}"
        assert err.value.message == message.replace("the node's", "the PACS's")
        assert asyncio.run(pushes.nodes("st-mary")) == []
    finally:
        pushes.close()
        sources.close()


def test_the_table_functions_group_instances_into_series(tmp_path):
    from medcompute.server.dicomnet import registry as nodes
    from medcompute.server.storage.db import Database

    db = Database(tmp_path)
    try:
        ae = nodes.CallingAE("SCANNER", "alice", "10.0.0.1", 1.0)
        db.run(nodes.add_ae, ae)
        assert db.run(nodes.calling_ae, " SCANNER ") == ae
        assert db.run(nodes.list_aes, "bob") == []
        db.transaction(nodes.record_instance, "alice", "1.2", "1.2.1", "i1", "SCANNER", "MC", 10.0)
        db.transaction(nodes.record_instance, "alice", "1.2", "1.2.2", "i2", "SCANNER", "MC", 11.0)
        assert db.run(nodes.due, 11.0, False) == []             # the last one is not quiet
        db.transaction(nodes.released, [("alice", "1.2")])
        [series] = db.run(nodes.due, 11.0, True)
        assert (series.instances, series.state) == (2, "receiving")
        assert db.run(nodes.instances, "alice", "1.2") == ["i1", "i2"]
        assert db.transaction(nodes.finish_series, series, "vol")
        assert not db.transaction(nodes.finish_series, series, "vol")    # not receiving
        assert db.run(nodes.leftovers) == [("alice", "1.2", "i1", "vol"),
                                           ("alice", "1.2", "i2", "vol")]
        [done] = db.run(nodes.unrouted)
        db.run(nodes.mark_routed, done)
        assert db.run(nodes.unrouted) == []
        db.run(nodes.forget_instances, "alice", "1.2", ["i1", "i2"])
        assert db.run(nodes.leftovers) == []
        assert [s.image_id for s in db.run(nodes.list_series, "alice")] == ["vol"]
        assert db.run(nodes.remove_ae, "SCANNER") and not db.run(nodes.remove_ae, "SCANNER")
    finally:
        db.close()


def test_the_source_table_functions_keep_sources_and_what_was_collected(tmp_path):
    from medcompute.server.dicomnet import collect
    from medcompute.server.storage.db import Database

    db = Database(tmp_path)
    try:
        src = collect.Source("alice", "pacs", "PACS", "10.0.0.2", 104, "move", 1.0, every=60)
        db.run(collect.put_source, src)
        assert db.run(collect.sources, "alice") == [src]
        assert db.run(collect.scheduled, 59.0) == []            # every 60 s since 0
        assert db.run(collect.scheduled, 60.0) == [src]
        db.run(collect.ran, "alice", "pacs", 100.0)
        assert db.run(collect.scheduled, 159.0) == []
        assert [s.name for s in db.run(collect.scheduled, 160.0)] == ["pacs"]
        db.run(collect.capacity_checked, "alice", "pacs", "full", 7.0)
        [kept] = db.run(collect.sources, "alice")
        assert (kept.capacity_state, kept.capacity_at, kept.last_run) == ("full", 7.0, 100.0)
        db.run(collect.put_source, src)                          # new settings reset it
        assert db.run(collect.sources, "alice")[0].capacity_state == ""
        db.run(collect.mark, "alice", "pacs", "1.2", 5.0)
        db.run(collect.mark, "alice", "pacs", "1.2", 6.0)
        assert db.run(collect.collected, "alice", "pacs") == {"1.2"}
        assert db.run(collect.delete_source, "alice", "pacs")
        assert not db.run(collect.delete_source, "alice", "pacs")
    finally:
        db.close()


def test_the_push_table_functions_keep_nodes_and_pushes(catalog_at):
    from medcompute.server.dicomnet import push
    from medcompute.server.storage.db import Database

    db = Database(catalog_at)
    try:
        node = push.Node("bob", "viewer", "VIEWER", "10.0.0.3", 104, 1.0, None)
        db.run(push.put_node, node)
        assert db.run(push.node, "bob", "viewer") == node
        assert db.run(push.nodes, "bob") == [node] and db.run(push.node, "bob", "x") is None
        db.run(push.add_push, "p1", "j1", "alice", "bob", "viewer", 5.0)
        db.run(push.add_push, "p2", "j1", "alice", "bob", "viewer", 6.0)   # one per node
        [row] = db.run(push.due, 5.0)
        assert (row.push_id, row.state) == ("p1", "pending")
        db.run(push.update, "p1", "sending", "", 1, 0, 0.0, "", 7.0)
        assert db.run(push.due, 10.0) == [] and db.run(push.resume) == 1
        db.run(push.update, "p1", "delivered", "", None, 3, 0.0, "proof", 8.0)
        [done] = db.run(push.pushes, "alice", "j1")
        assert (done.state, done.attempts, done.delivered, done.proof) == (
            "delivered", 1, 3, "proof")
        assert db.run(push.pushes, "bob") == [done] and db.run(push.pushes, "carol") == []
        assert db.run(push.delete_node, "bob", "viewer")
        assert not db.run(push.delete_node, "bob", "viewer")
    finally:
        db.close()


def test_a_pending_push_is_claimed_for_sending_once(catalog_at):
    """Two front ends on one catalog find the same push due: one of them sends it."""
    from medcompute.server.dicomnet import push
    from medcompute.server.storage.db import Database

    host_a, host_b = Database(catalog_at), Database(catalog_at)
    try:
        host_a.run(push.add_push, "p1", "j1", "alice", "bob", "viewer", 5.0)
        assert [r.push_id for r in host_b.run(push.due, 5.0)] == ["p1"]
        assert host_a.run(push.claim, "p1", 1, 6.0) is True
        assert host_b.run(push.claim, "p1", 1, 6.0) is False
        [row] = host_b.run(push.pushes, "alice", "j1")
        assert (row.state, row.attempts) == ("sending", 1)
    finally:
        host_a.close()
        host_b.close()


def _owner(db, push_id: str) -> tuple[str, str, float]:
    [row] = db.run(lambda tx: tx.execute(
        "SELECT state, owner, lease_until FROM dicom_push WHERE push_id = ?",
        (push_id,)).fetchall())
    return tuple(row)


def test_a_push_being_sent_is_taken_over_only_once_its_lease_ran_out(catalog_at):
    """Host A sends a push (owner, lease); host B, starting, leaves it while A renews the
    lease, takes it over once the lease ran out, and A's late end is then not recorded."""
    from medcompute.server.dicomnet import push
    from medcompute.server.storage.db import Database

    host_a, host_b = Database(catalog_at), Database(catalog_at)
    try:
        host_a.run(push.add_push, "p1", "j1", "alice", "bob", "viewer", 5.0)
        assert host_a.run(push.claim, "p1", 1, 6.0, "a", 30.0) is True
        assert _owner(host_b, "p1") == ("sending", "a", 36.0)
        assert host_b.run(push.take_over, 20.0) == 0          # A is alive: its lease holds
        assert host_b.run(push.claim, "p1", 2, 20.0, "b", 30.0) is False
        assert host_a.run(push.renew_push, "p1", "a", 50.0) is True
        assert host_b.run(push.take_over, 40.0) == 0          # renewed past 40
        assert host_b.run(push.take_over, 51.0) == 1          # A stopped renewing
        assert host_a.run(push.renew_push, "p1", "a", 80.0) is False
        assert host_b.run(push.claim, "p1", 2, 52.0, "b", 30.0) is True
        # A's try ends late: nothing of it is recorded; B's end is.
        assert host_a.run(partial(push.update, owner="a"), "p1", "delivered", "", None, 5,
                          0.0, "x", 53.0) is False
        assert _owner(host_b, "p1") == ("sending", "b", 82.0)
        assert host_b.run(partial(push.update, owner="b"), "p1", "delivered", "", None, 5,
                          0.0, "x", 54.0) is True
        [row] = host_a.run(push.pushes, "alice", "j1")
        assert (row.state, row.attempts, row.delivered) == ("delivered", 2, 5)
        assert host_b.run(push.take_over, 1000.0) == 0        # delivered: not sending
    finally:
        host_a.close()
        host_b.close()


def test_a_push_another_front_end_took_is_not_rescheduled_as_pending(catalog_at):
    """Host B found the push due and looks at its job; host A claims it meanwhile: B's
    "not yet" (pending, later) or "cannot deliver" (failed) changes nothing."""
    from medcompute.server.dicomnet import push
    from medcompute.server.storage.db import Database

    host_a, host_b = Database(catalog_at), Database(catalog_at)
    try:
        host_a.run(push.add_push, "p1", "j1", "alice", "bob", "viewer", 5.0)
        assert host_a.run(push.claim, "p1", 1, 6.0, "a", 30.0)
        assert host_b.run(partial(push.update, pending=True), "p1", "pending", "", None, 0,
                          9.0, "", 7.0) is False
        assert host_b.run(partial(push.update, pending=True), "p1", "failed", "gone", None,
                          0, 0.0, "", 7.0) is False
        assert _owner(host_a, "p1") == ("sending", "a", 36.0)
    finally:
        host_a.close()
        host_b.close()


def test_a_scheduled_collect_is_claimed_by_one_front_end_per_period(catalog_at):
    """Two front ends find the same source due: the first to record the run collects it."""
    from medcompute.server.dicomnet import collect
    from medcompute.server.storage.db import Database

    host_a, host_b = Database(catalog_at), Database(catalog_at)
    try:
        src = collect.Source("alice", "pacs", "PACS", "10.0.0.2", 104, "move", 1.0, every=60)
        host_a.run(collect.put_source, src)
        [due_a] = host_a.run(collect.scheduled, 60.0)
        [due_b] = host_b.run(collect.scheduled, 60.5)
        assert host_a.run(collect.ran, "alice", "pacs", 60.0, due_a.last_run) is True
        assert host_b.run(collect.ran, "alice", "pacs", 60.5, due_b.last_run) is False
        [kept] = host_b.run(collect.sources, "alice")
        assert kept.last_run == 60.0
        assert host_b.run(collect.scheduled, 119.0) == []     # the next period
        [again] = host_b.run(collect.scheduled, 120.0)
        assert host_b.run(collect.ran, "alice", "pacs", 120.0, again.last_run) is True
    finally:
        host_a.close()
        host_b.close()


def test_source_books_on_two_front_ends_claim_a_due_run_once(catalog_at):
    """The facade the schedule loop uses: one of two books claims the due run."""
    from medcompute.server.dicomnet.collect import SourceBook

    book_a, book_b = SourceBook(catalog_at), SourceBook(catalog_at)
    try:
        async def both():
            await book_a.add("alice", "pacs", "PACS", "10.0.0.2", 104, "move", every=1)
            [src_a], [src_b] = await book_a.scheduled(1e10), await book_b.scheduled(1e10)
            return [await book_a.ran(src_a, 1e10), await book_b.ran(src_b, 1e10 + 1)]
        assert asyncio.run(both()) == [True, False]
    finally:
        book_a.close()
        book_b.close()


@pytest.mark.parametrize("host, kept", [
    ("10.0.4.21", "10.0.4.21"), (" 10.0.4.7/24 ", "10.0.4.0/24"), ("fd00::/64", "fd00::/64"),
    ("ct-scanner.st-mary.example", "ct-scanner.st-mary.example"), ("::1", "::1")])
def test_a_caller_host_is_an_address_a_network_or_a_name(host, kept):
    assert check_caller_host(host, "host") == kept


@pytest.mark.parametrize("host", ["", "*", "*.example.org", "0.0.0.0", "::", "0.0.0.0/0",
                                  "::/0", "10.0.0.0/33", "two words", "a;b"])
def test_any_host_is_never_a_caller_host(host):
    with pytest.raises(InvalidArgument, match="the AE calls from") as err:
        check_caller_host(host, "calling_ae.host")
    assert err.value.field == "calling_ae.host"


def test_a_calling_ae_is_registered_with_a_concrete_host_only(registry):
    with pytest.raises(InvalidArgument, match=r"any host, '\*', is not allowed"):
        registry.add_ae_now("WILD", "st-mary", "*")
    with pytest.raises(InvalidArgument, match="is every address"):
        registry.add_ae_now("WILD", "st-mary", "0.0.0.0/0")
    assert registry.list_aes_now() == []
    assert registry.add_ae_now("WARD", "st-mary", "10.0.4.9/24").host == "10.0.4.0/24"


def test_hosts_match_addresses_networks_and_names_never_a_wildcard():
    assert host_matches("10.0.4.21", "10.0.4.21")
    assert not host_matches("10.0.4.21", "10.0.4.22")
    assert host_matches("10.0.4.0/24", "10.0.4.200")
    assert not host_matches("10.0.4.0/24", "10.0.5.1")
    assert host_matches("127.0.0.1", "::ffff:127.0.0.1")     # an IPv4 caller on a v6 socket
    assert host_matches("localhost", "127.0.0.1")
    assert not host_matches("*", "127.0.0.1")                # as earlier versions stored it
    assert not host_matches("10.0.4.21", "not an address")


@pytest.mark.parametrize("host", ["*", "", "pacs example", "a/b"])
def test_a_peer_host_is_an_address_or_a_name(host):
    with pytest.raises(InvalidArgument, match="expected the PACS's host") as err:
        check_address(host, 104, "source", "the PACS's")
    assert err.value.field == "source.host"
