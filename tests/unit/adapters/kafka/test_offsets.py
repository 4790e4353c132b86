"""OffsetTracker and RebalanceListener against a recording consumer (no broker): what is
committed and when, what the state covers, and what a rebalance keeps."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.adapters.kafka import offsets as offsets_module
from engine.adapters.kafka.offsets import OffsetTracker, RebalanceListener

T0 = TopicPartition("events", 0)
T1 = TopicPartition("events", 1)
T2 = TopicPartition("events", 2)
OTHER = TopicPartition("other", 0)


class FakeConsumer:
    """Records commits and seeks; a commit fails with `fail` or hangs while `hang`."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.attempts = 0
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.fail: BaseException | None = None
        self.hang = False
        self.on_commit: Any = None

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.attempts += 1
        if self.on_commit is not None:
            self.on_commit(offsets)
        if self.hang:
            await asyncio.Event().wait()
        if self.fail is not None:
            raise self.fail
        self.commits.append(dict(offsets))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


def tracker() -> tuple[OffsetTracker, FakeConsumer]:
    t = OffsetTracker()
    consumer = FakeConsumer()
    t.consumer = consumer
    return t, consumer


# -- positions ------------------------------------------------------------------------


def test_positions_follow_the_applied_offsets() -> None:
    t = OffsetTracker()
    assert not t.has_applied()
    assert t.position(T0) is None
    t.applied(T0, 10)
    t.applied(T1, 3)
    t.applied(T0, 12)
    assert t.has_applied()
    assert t.position(T0) == 12
    assert t.position(T1) == 3
    assert t.position(T2) is None
    assert t.applied_offsets() == {("events", 0): 12, ("events", 1): 3}


def test_forget_drops_positions_of_the_given_partitions_only() -> None:
    t = OffsetTracker()
    t.applied(T0, 10)
    t.applied(T1, 3)
    t.forget([T0, T2])
    assert t.position(T0) is None
    assert t.position(T1) == 3
    assert t.applied_offsets() == {("events", 1): 3}


# -- commits --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_no_commit_before_the_consumer_has_started() -> None:
    t = OffsetTracker()
    t.applied(T0, 10)
    assert await t.commit(None, reason="test") is False
    assert t.commit_failures == 0


@pytest.mark.asyncio
async def test_commit_sends_the_applied_offsets_of_every_partition() -> None:
    t, consumer = tracker()
    t.applied(T0, 10)
    t.applied(T1, 5)
    assert await t.commit(None, reason="test") is True
    assert consumer.commits == [{T0: 10, T1: 5}]


@pytest.mark.asyncio
async def test_commit_sends_only_offsets_not_committed_yet() -> None:
    t, consumer = tracker()
    t.applied(T0, 10)
    t.applied(T1, 5)
    await t.commit(None, reason="test")
    assert await t.commit(None, reason="again") is True  # nothing new: no round trip
    assert consumer.attempts == 1
    t.applied(T0, 12)
    assert await t.commit(None, reason="test") is True
    assert consumer.commits == [{T0: 10, T1: 5}, {T0: 12}]


@pytest.mark.asyncio
async def test_commit_of_given_partitions_leaves_the_others() -> None:
    t, consumer = tracker()
    t.applied(T0, 10)
    t.applied(T1, 5)
    assert await t.commit([T1, T2], reason="revoke") is True  # T2: nothing applied
    assert consumer.commits == [{T1: 5}]
    assert await t.commit([T2], reason="revoke") is True
    assert consumer.attempts == 1
    await t.commit(None, reason="rest")
    assert consumer.commits == [{T1: 5}, {T0: 10}]


@pytest.mark.asyncio
async def test_a_commit_without_anything_applied_succeeds_without_a_round_trip() -> None:
    t, consumer = tracker()
    assert await t.commit(None, reason="test") is True
    assert consumer.attempts == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("error", [KafkaError(), KafkaTimeoutError()])
async def test_a_failed_commit_is_counted_logged_and_retried_next_time(
    error: KafkaError, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="burnrate")
    t, consumer = tracker()
    t.applied(T0, 10)
    consumer.fail = error
    assert await t.commit(None, reason="periodic") is False
    assert t.commit_failures == 1
    assert consumer.commits == []
    assert any(
        r.name == "burnrate.adapters.kafka.offsets" and "periodic" in r.getMessage()
        for r in caplog.records
    )
    consumer.fail = None
    assert await t.commit(None, reason="periodic") is True
    assert consumer.commits == [{T0: 10}]  # the same offsets again
    assert t.commit_failures == 1


@pytest.mark.asyncio
async def test_a_commit_that_hangs_past_the_timeout_fails_and_is_retried() -> None:
    t, consumer = tracker()
    t.applied(T0, 10)
    consumer.hang = True
    assert await t.commit(None, reason="test", timeout_s=0.01) is False
    assert t.commit_failures == 1
    consumer.hang = False
    assert await t.commit(None, reason="test", timeout_s=1) is True
    assert consumer.commits == [{T0: 10}]


@pytest.mark.asyncio
async def test_applied_after_a_failure_the_latest_offset_is_committed() -> None:
    t, consumer = tracker()
    t.applied(T0, 10)
    consumer.fail = KafkaError()
    await t.commit(None, reason="test")
    consumer.fail = None
    t.applied(T0, 15)
    await t.commit(None, reason="test")
    assert consumer.commits == [{T0: 15}]


ops = st.lists(
    st.one_of(
        st.tuples(st.just("apply"), st.sampled_from([T0, T1, T2]), st.integers(0, 5)),
        st.tuples(
            st.just("commit"),
            st.one_of(st.none(), st.lists(st.sampled_from([T0, T1, T2]), unique=True)),
            st.booleans(),
        ),
        st.tuples(st.just("forget"), st.lists(st.sampled_from([T0, T1, T2]), unique=True)),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(steps=ops)
def test_each_commit_sends_exactly_the_applied_offsets_the_broker_lacks(
    steps: list[tuple[Any, ...]],
) -> None:
    async def run() -> None:
        t, consumer = tracker()
        applied: dict[TopicPartition, int] = {}
        acked: dict[TopicPartition, int] = {}  # what the broker has, as the tracker knows it
        for step in steps:
            if step[0] == "apply":
                _, tp, off = step
                t.applied(tp, off)
                applied[tp] = off
            elif step[0] == "forget":
                t.forget(step[1])
                for tp in step[1]:
                    applied.pop(tp, None)
                    acked.pop(tp, None)
            else:
                _, parts, ok = step
                consumer.fail = None if ok else KafkaError()
                scope = applied if parts is None else {p: applied[p] for p in parts if p in applied}
                expected = {tp: off for tp, off in scope.items() if acked.get(tp) != off}
                before = consumer.attempts
                result = await t.commit(parts, reason="prop")
                if not expected:
                    assert result is True
                    assert consumer.attempts == before
                    continue
                assert consumer.attempts == before + 1
                assert result is ok
                if ok:
                    assert consumer.commits[-1] == expected
                    acked.update(expected)

    asyncio.run(run())


# -- state offsets --------------------------------------------------------------------


def test_without_a_state_the_state_offsets_are_the_applied_ones() -> None:
    t = OffsetTracker()
    assert t.state_offsets() == {}
    t.applied(T0, 10)
    assert t.state_offsets() == {("events", 0): 10}


def test_state_offsets_merge_restored_and_applied_positions() -> None:
    t = OffsetTracker()
    t.use_state_offsets({("events", 0): 3, ("events", 1): 7, ("other", 0): 1})
    assert t.state_offsets() == {("events", 0): 3, ("events", 1): 7, ("other", 0): 1}
    t.applied(T0, 10)
    t.applied(T2, 4)
    assert t.state_offsets() == {
        ("events", 0): 10,  # applied since the restore
        ("events", 1): 7,  # not consumed since: as restored
        ("events", 2): 4,
        ("other", 0): 1,
    }


def test_seek_to_state_seeks_only_the_partitions_the_state_covers() -> None:
    t = OffsetTracker()
    consumer = FakeConsumer()
    t.use_state_offsets({("events", 0): 3, ("events", 1): 7})
    t.seek_to_state(consumer, [T0, T2])
    assert consumer.seeks == [(T0, 3)]
    assert t.position(T0) == 3  # marked applied: the state counts up to there
    assert t.position(T2) is None
    assert t.applied_offsets() == {("events", 0): 3}


def test_seek_to_state_without_a_state_or_with_an_empty_one_seeks_nothing() -> None:
    t = OffsetTracker()
    consumer = FakeConsumer()
    t.seek_to_state(consumer, [T0, T1])
    t.use_state_offsets({})
    t.seek_to_state(consumer, [T0, T1])
    assert consumer.seeks == []
    assert not t.has_applied()


@pytest.mark.asyncio
async def test_positions_from_the_state_are_committed_like_applied_ones() -> None:
    t, consumer = tracker()
    t.use_state_offsets({("events", 0): 3})
    t.seek_to_state(consumer, [T0])
    assert await t.commit(None, reason="test") is True
    assert consumer.commits == [{T0: 3}]


def test_a_revoked_partition_keeps_its_position_in_the_state() -> None:
    t = OffsetTracker()
    t.use_state_offsets({("events", 0): 3, ("events", 1): 7})
    t.applied(T0, 20)
    t.keep_positions([T0, T2])
    t.forget([T0, T2])
    assert t.position(T0) is None
    assert t.state_offsets() == {("events", 0): 20, ("events", 1): 7}


def test_without_a_state_revoked_positions_are_not_kept() -> None:
    t = OffsetTracker()
    t.applied(T0, 20)
    t.keep_positions([T0])
    t.forget([T0])
    assert t.state_offsets() == {}


def test_forget_with_state_too_drops_the_state_position() -> None:
    t = OffsetTracker()
    t.use_state_offsets({("events", 0): 3, ("events", 1): 7})
    t.applied(T0, 20)
    t.forget([T0], state_too=True)
    assert t.state_offsets() == {("events", 1): 7}
    t.forget([T1])  # the state keeps what it covers
    assert t.state_offsets() == {("events", 1): 7}


# -- the rebalance listener -----------------------------------------------------------


@pytest.mark.asyncio
async def test_revoked_partitions_are_committed_before_they_are_forgotten() -> None:
    t, consumer = tracker()
    t.applied(T0, 10)
    t.applied(T1, 5)
    seen_at_commit: list[int | None] = []
    consumer.on_commit = lambda offsets: seen_at_commit.append(t.position(T0))
    revoked_calls: list[list[TopicPartition]] = []

    def on_revoked(tps: list[TopicPartition]) -> None:
        revoked_calls.append(list(tps))
        assert t.position(T0) is None  # forgotten by then

    listener = RebalanceListener(t, consumer, on_revoked)
    await listener.on_partitions_revoked([T0])
    assert consumer.commits == [{T0: 10}]  # only the revoked partition
    assert seen_at_commit == [10]  # still known while committing
    assert t.position(T0) is None
    assert t.position(T1) == 5
    assert revoked_calls == [[T0]]


@pytest.mark.asyncio
async def test_revoking_keeps_state_positions() -> None:
    t, consumer = tracker()
    t.use_state_offsets({})
    t.applied(T0, 10)
    await RebalanceListener(t, consumer).on_partitions_revoked(iter([T0]))
    # with a state store, no snapshot holds offset 10 yet: nothing may be committed
    assert consumer.commits == []
    assert consumer.attempts == 0
    assert t.position(T0) is None
    assert t.state_offsets() == {("events", 0): 10}


@pytest.mark.asyncio
async def test_a_failed_commit_on_revoke_still_forgets_and_calls_back() -> None:
    t, consumer = tracker()
    t.applied(T0, 10)
    consumer.fail = KafkaError()
    calls: list[list[TopicPartition]] = []
    await RebalanceListener(t, consumer, calls.append).on_partitions_revoked([T0])
    assert t.commit_failures == 1
    assert t.position(T0) is None
    assert calls == [[T0]]


@pytest.mark.asyncio
async def test_revoking_nothing_commits_nothing_and_still_calls_back() -> None:
    t, consumer = tracker()
    t.applied(T0, 10)
    calls: list[list[TopicPartition]] = []
    await RebalanceListener(t, consumer, calls.append).on_partitions_revoked([])
    assert consumer.attempts == 0
    assert t.position(T0) == 10
    assert calls == [[]]


@pytest.mark.asyncio
async def test_assigned_partitions_are_positioned_from_the_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="burnrate")
    t = OffsetTracker()
    consumer = FakeConsumer()  # the listener's own: the tracker has none yet
    t.use_state_offsets({("events", 1): 7})
    await RebalanceListener(t, consumer).on_partitions_assigned([T0, T1])
    assert consumer.seeks == [(T1, 7)]
    assert t.position(T1) == 7
    assert "partitions assigned: events[0], events[1]" in caplog.messages


# -- with a state store: commits never pass a written snapshot --------------------------


def state_tracker(
    restored: dict[tuple[str, int], int] | None = None,
) -> tuple[OffsetTracker, FakeConsumer]:
    t, consumer = tracker()
    t.use_state_offsets(restored or {})
    return t, consumer


@pytest.mark.asyncio
async def test_with_a_state_store_nothing_is_committed_before_the_first_snapshot() -> None:
    t, consumer = state_tracker()
    assert t.commits_snapshots
    t.applied(T0, 10)
    t.applied(T1, 5)
    assert await t.commit(None, reason="periodic") is True
    assert await t.commit([T0, T1], reason="revoke") is True
    assert consumer.attempts == 0  # nothing a snapshot holds: no round trip at all


@pytest.mark.asyncio
async def test_with_a_state_store_the_snapshots_offsets_are_committed_not_the_applied_ones() -> (
    None
):
    t, consumer = state_tracker()
    t.applied(T0, 10)
    t.applied(T1, 5)
    t.saved({("events", 0): 10, ("events", 1): 5})
    t.applied(T0, 25)  # counted after the snapshot: not in any file yet
    assert await t.commit(None, reason="state periodic") is True
    assert consumer.commits == [{T0: 10, T1: 5}]
    assert await t.commit(None, reason="periodic") is True  # nothing new was saved
    assert consumer.attempts == 1
    t.saved({("events", 0): 25, ("events", 1): 5})
    assert await t.commit(None, reason="state periodic") is True
    assert consumer.commits == [{T0: 10, T1: 5}, {T0: 25}]
    assert t.saved_offsets() == {("events", 0): 25, ("events", 1): 5}


@pytest.mark.asyncio
async def test_with_a_state_store_only_owned_partitions_a_snapshot_holds_are_committed() -> None:
    t, consumer = state_tracker()
    t.applied(T0, 10)
    t.applied(T2, 4)
    # the snapshot names T2 and a partition this member no longer owns (other[0])
    t.saved({("events", 0): 10, ("events", 2): 4, ("other", 0): 9})
    t.forget([T2])  # revoked since
    t.applied(T1, 3)  # newly assigned since the snapshot: no file covers it
    assert await t.commit(None, reason="test") is True
    assert consumer.commits == [{T0: 10}]
    assert await t.commit([T1, T2, OTHER], reason="revoke") is True
    assert consumer.attempts == 1


@pytest.mark.asyncio
async def test_restored_offsets_come_from_a_file_and_may_be_committed() -> None:
    t, consumer = state_tracker({("events", 0): 3, ("events", 1): 7})
    t.seek_to_state(consumer, [T0])
    t.applied(T0, 30)
    assert await t.commit(None, reason="test") is True
    assert consumer.commits == [{T0: 3}]  # T1 is not assigned here


@pytest.mark.asyncio
async def test_a_partition_rewound_with_its_state_is_not_committed_until_saved_again() -> None:
    t, consumer = state_tracker()
    t.applied(T0, 10)
    t.saved({("events", 0): 10})
    t.forget([T0], state_too=True)
    t.applied(T0, 2)  # read again from the earliest offset
    assert await t.commit(None, reason="test") is True
    assert consumer.attempts == 0
    assert t.saved_offsets() == {}


def test_unsaved_says_whether_a_partition_was_applied_past_the_snapshot() -> None:
    t, _ = state_tracker()
    assert not t.unsaved([T0])
    t.applied(T0, 10)
    assert t.unsaved([T0])
    t.saved({("events", 0): 10})
    assert not t.unsaved([T0, T1])
    t.applied(T1, 1)
    assert t.unsaved([T0, T1])


@pytest.mark.asyncio
async def test_a_revoke_asks_for_a_snapshot_first_and_commits_what_it_holds() -> None:
    t, consumer = state_tracker()
    t.applied(T0, 10)
    t.applied(T1, 5)
    asked: list[list[TopicPartition]] = []

    async def save(revoked: list[TopicPartition]) -> None:
        asked.append(revoked)
        assert consumer.attempts == 0  # before any commit
        t.saved(t.state_offsets())

    t.before_revoke = save
    await RebalanceListener(t, consumer).on_partitions_revoked([T0])
    assert asked == [[T0]]
    assert consumer.commits == [{T0: 10}]  # the revoked partition, from the new snapshot
    assert t.state_offsets() == {("events", 0): 10, ("events", 1): 5}


@pytest.mark.asyncio
async def test_a_revoke_with_nothing_unsaved_writes_no_snapshot() -> None:
    t, consumer = state_tracker()
    t.applied(T0, 10)
    t.saved({("events", 0): 10})
    asked: list[list[TopicPartition]] = []

    async def save(revoked: list[TopicPartition]) -> None:
        asked.append(revoked)

    t.before_revoke = save
    await RebalanceListener(t, consumer).on_partitions_revoked([T0])
    assert asked == []
    assert consumer.commits == [{T0: 10}]


@pytest.mark.asyncio
@pytest.mark.parametrize("failure", ["hangs", "raises"])
async def test_a_revoke_whose_snapshot_fails_commits_only_the_last_snapshot(
    failure: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="burnrate")
    monkeypatch.setattr(offsets_module, "REVOKE_SAVE_TIMEOUT_S", 0.05)
    t, consumer = state_tracker()
    t.applied(T0, 10)
    t.applied(T1, 20)
    t.saved({("events", 0): 10})
    t.applied(T0, 15)

    async def save(revoked: list[TopicPartition]) -> None:
        if failure == "hangs":
            await asyncio.Event().wait()
        raise OSError(28, "No space left on device")

    t.before_revoke = save
    calls: list[list[TopicPartition]] = []
    await RebalanceListener(t, consumer, calls.append).on_partitions_revoked([T0, T1])
    assert consumer.commits == [{T0: 10}]  # not 15, and nothing for T1
    assert calls == [[T0, T1]]
    assert t.position(T0) is None
    assert t.state_offsets() == {("events", 0): 15, ("events", 1): 20}
    expected = "no snapshot within" if failure == "hangs" else "the snapshot before the revoke"
    assert any(expected in r.getMessage() for r in caplog.records)


state_ops = st.lists(
    st.one_of(
        st.tuples(st.just("apply"), st.sampled_from([T0, T1, T2]), st.integers(0, 50)),
        st.tuples(st.just("save")),
        st.tuples(
            st.just("commit"),
            st.one_of(st.none(), st.lists(st.sampled_from([T0, T1, T2]), unique=True)),
        ),
        st.tuples(st.just("revoke"), st.lists(st.sampled_from([T0, T1, T2]), unique=True)),
        st.tuples(st.just("assign"), st.lists(st.sampled_from([T0, T1, T2]), unique=True)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(steps=state_ops, save_on_revoke=st.booleans())
def test_with_a_state_store_no_commit_ever_passes_the_last_written_snapshot(
    steps: list[tuple[Any, ...]], save_on_revoke: bool
) -> None:
    """Whatever the order of batches, snapshots, commits and rebalances: every committed
    offset is the one the last written snapshot holds for a partition this member owns."""

    async def run() -> None:
        t, consumer = state_tracker()
        written: dict[tuple[str, int], int] = {}  # the file, as last written
        owned: set[TopicPartition] = set()

        def save() -> None:
            offsets = t.state_offsets()
            written.clear()
            written.update(offsets)
            t.saved(offsets)

        async def before_revoke(_revoked: list[TopicPartition]) -> None:
            save()

        if save_on_revoke:
            t.before_revoke = before_revoke

        def check_last_commit(before: int) -> None:
            for commit in consumer.commits[before:]:
                for tp, off in commit.items():
                    assert tp in owned
                    assert written[(tp.topic, tp.partition)] == off

        for step in steps:
            before = len(consumer.commits)
            if step[0] == "apply":
                _, tp, off = step
                if tp in owned:
                    t.applied(tp, max(off, t.position(tp) or 0))
            elif step[0] == "save":
                save()
            elif step[0] == "commit":
                await t.commit(step[1], reason="prop")
            elif step[0] == "revoke":
                gone = [tp for tp in step[1] if tp in owned]
                await RebalanceListener(t, consumer).on_partitions_revoked(gone)
                check_last_commit(before)
                owned.difference_update(gone)
                continue
            else:
                new = [tp for tp in step[1] if tp not in owned]
                owned.update(new)
                await RebalanceListener(t, consumer).on_partitions_assigned(new)
            check_last_commit(before)

    asyncio.run(run())
