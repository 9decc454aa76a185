"""Every store operation and compare-and-set transition, on every backend (see conftest.py).

These tests drive the `Store` protocol directly, as a pass, an approver, a rollback and a recovery do,
so a backend that passes them gives the runtime every guarantee it relies on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from codemode import Decision, Snippet
from codemode.codec import canonical, dumps
from codemode.replay import Call
from codemode.store.base import Store, StoredCheckpoint

RT = "contract"


def call(seq: int, method: str = "create", *, gated: bool = False, ephemeral: bool = False, **args: Any) -> Call:
    return Call(
        seq=seq,
        connector="items",
        method=method,
        args_json=canonical(args),
        requires_approval=gated,
        ephemeral=ephemeral,
    )


def decision(kind: str = "approve", by: str = "ana", args: Any = None) -> Decision:
    return Decision(kind, by, "looks right", datetime.now(timezone.utc), args)  # type: ignore[arg-type]


async def aged() -> None:
    """Let a clock tick pass, so a zero age means "older than now" even on a fast machine."""
    await asyncio.sleep(0.01)


async def begin(store: Store, code: str = "return 1", **kwargs: Any) -> tuple[str, int]:
    begun = await store.begin(RT, code, ["items"], 50, **kwargs)
    return begun.execution_id, begun.attempt


async def paused_with(store: Store, *gated_seqs: int) -> tuple[str, int]:
    """A run paused at the given gated seqs (after one applied read at seq 0)."""
    execution_id, attempt = await begin(store)
    assert (await store.decide(RT, execution_id, attempt, call(0, "read"))).kind == "execute"
    assert await store.record_result(RT, execution_id, attempt, 0, dumps({"n": 1}))
    for seq in gated_seqs:
        assert (await store.decide(RT, execution_id, attempt, call(seq, gated=True, title=f"t{seq}"))).kind == "pause"
    assert await store.pause(RT, execution_id, attempt)
    return execution_id, attempt


# -- begin, keys and metadata ---------------------------------------------------


async def test_begin_starts_a_running_run_with_attempt_one(store: Store) -> None:
    execution_id, attempt = await begin(store, "return 2", metadata={"user": "u1"})
    assert attempt == 1
    execution = await store.get_execution(RT, execution_id)
    assert execution is not None
    assert (execution.status, execution.code, execution.connectors) == ("running", "return 2", ["items"])
    assert execution.metadata == {"user": "u1"}
    assert execution.log == []


async def test_open_is_idempotent(store_factory: Callable[[], Store]) -> None:
    store = store_factory()
    await store.open()
    await store.open()
    execution_id, _ = await begin(store)
    await store.close()
    again = store_factory()
    await again.open()
    assert (await again.get_execution(RT, execution_id)) is not None
    await again.close()


async def test_a_repeated_key_returns_the_existing_run(store: Store) -> None:
    first = await store.begin(RT, "return 1", ["items"], 50, key="call-1")
    second = await store.begin(RT, "return 999", ["items"], 50, key="call-1")
    assert second.execution_id == first.execution_id
    assert second.existing is not None and second.existing.code == "return 1"
    assert len(await store.list_executions(RT)) == 1


async def test_a_key_stays_taken_after_delete_and_prune(store: Store) -> None:
    deleted, attempt = await begin(store, key="k-deleted")
    assert await store.complete(RT, deleted, attempt, dumps(1), [])
    assert await store.delete_execution(RT, deleted) == "completed"
    again = await store.begin(RT, "return 1", ["items"], 50, key="k-deleted")
    assert (again.execution_id, again.pruned, again.existing) == (deleted, True, None)

    pruned, attempt = await begin(store, key="k-pruned")
    assert await store.complete(RT, pruned, attempt, dumps(1), [])
    assert await store.prune_executions(RT, keep=0) == 1
    assert (await store.begin(RT, "return 1", ["items"], 50, key="k-pruned")).pruned


async def test_runtimes_keep_separate_histories_and_keys(store: Store) -> None:
    mine = await store.begin(RT, "return 1", ["items"], 50, key="same")
    theirs = await store.begin("other", "return 1", ["items"], 50, key="same")
    assert mine.execution_id != theirs.execution_id
    assert [e.id for e in await store.list_executions(RT)] == [mine.execution_id]
    assert await store.get_execution("other", mine.execution_id) is None
    assert await store.delete_execution("other", mine.execution_id) is None


async def test_begin_prunes_terminal_runs_beyond_the_retention(store: Store) -> None:
    ended = []
    for _ in range(3):
        execution_id, attempt = await begin(store)
        assert await store.complete(RT, execution_id, attempt, dumps(1), [])
        ended.append(execution_id)
    paused, _ = await paused_with(store, 1)
    newest = await store.begin(RT, "return 1", ["items"], 2)
    kept = {e.id for e in await store.list_executions(RT)}
    # Two terminal runs are kept; running and paused runs are never pruned.
    assert kept == {ended[1], ended[2], paused, newest.execution_id}


async def test_a_long_retention_is_checked_once_per_hundredth_and_still_prunes_the_oldest(
    store: Store, store_factory: Callable[[], Store]
) -> None:
    """With `max_executions` of 100 or more, `begin` checks the retention on the first run of each store and
    then on one new run in `max_executions // 100`: the history holds at most that many ended runs more
    than asked between checks, and each check deletes the oldest ones down to `max_executions`."""
    keep, every = 300, 3
    ended = []
    for _ in range(keep + 10):
        begun = await store.begin(RT, "return 1", ["items"], keep)
        assert await store.complete(RT, begun.execution_id, begun.attempt, dumps(1), [])
        ended.append(begun.execution_id)
    # Runs 1, 4, 7, ... checked: the 310th begin found 309 ended and cut them to 300; the last one ended since.
    stored = [e.id for e in await store.list_executions(RT)]
    assert len(stored) <= keep + every
    assert set(stored) == set(ended[-len(stored) :])  # the oldest went, the newest stayed
    assert len(stored) == keep + 1
    # A store opened later (another process) checks on its first new run: the oldest are cut at once.
    other = store_factory()
    await other.open()
    try:
        begun = await other.begin(RT, "return 1", ["items"], keep - 50)
        after = {e.id for e in await other.list_executions(RT)}
        assert after == {*ended[-(keep - 50) :], begun.execution_id}
    finally:
        await other.close()


async def test_list_executions_filters_by_metadata_status_and_limit(store: Store) -> None:
    a, attempt_a = await begin(store, metadata={"user": "u1", "team": "x"})
    b, _ = await begin(store, metadata={"user": "u2"})
    c, attempt_c = await begin(store, metadata={"user": "u1"})
    assert await store.complete(RT, a, attempt_a, dumps(1), [])
    assert await store.fail(RT, c, attempt_c, "boom", [])
    assert [e.id for e in await store.list_executions(RT)] == [c, b, a]  # newest first
    assert [e.id for e in await store.list_executions(RT, 2)] == [c, b]
    assert [e.id for e in await store.list_executions(RT, metadata={"user": "u1"})] == [c, a]
    assert [e.id for e in await store.list_executions(RT, metadata={"user": "u1", "team": "x"})] == [a]
    assert [e.id for e in await store.list_executions(RT, status=["running"])] == [b]
    assert [e.id for e in await store.list_executions(RT, status=["completed", "error"])] == [c, a]
    assert await store.list_executions(RT, metadata={"user": "nobody"}) == []


# -- one pass: decide and record ------------------------------------------------


@pytest.mark.parametrize(
    "bad", [{"key": "a\x00b"}, {"metadata": {"k": "v\x00"}}, {"metadata": {"k\ud800": "v"}}, {"key": "\udc80"}]
)
async def test_nul_or_a_lone_surrogate_in_a_key_or_metadata_is_refused_and_poisons_nothing(
    store: Store, bad: dict[str, Any]
) -> None:
    """PostgreSQL text refuses NUL (and its jsonb the escaped \\u0000), UTF-8 lone surrogates: every store
    refuses them up front with one clear error, instead of storing a row that breaks later filters."""
    kept, _ = await begin(store, metadata={"k": "v"})
    with pytest.raises(ValueError, match="NUL characters or lone surrogates"):
        await begin(store, **bad)
    assert [e.id for e in await store.list_executions(RT, metadata={"k": "v"})] == [kept]
    assert [e.id for e in await store.list_executions(RT)] == [kept]
    assert await store.list_executions(RT, metadata={"k": "v\x00"}) == []
    assert await store.list_executions(RT, metadata={"\ud800": "v"}) == []


async def test_error_texts_with_nul_or_a_lone_surrogate_are_stored_readably(store: Store) -> None:
    """A rejection's reason (a human's text) or a failure message may hold NUL or a lone surrogate:
    the run still ends, with U+FFFD in their place (PostgreSQL text refuses NUL, UTF-8 surrogates)."""
    rejected, _ = await paused_with(store, 1)
    ended = await store.settle(RT, rejected, 1, decision("reject"), end_error="Rejected by a\x00b: no\ud800")
    assert ended.kind == "ended"
    execution = await store.get_execution(RT, rejected)
    assert execution is not None and execution.status == "rejected"
    assert execution.error == "Rejected by a\ufffdb: no\ufffd"
    failed, attempt = await begin(store)
    assert await store.fail(RT, failed, attempt, "bad\x00\udc80", [])
    execution = await store.get_execution(RT, failed)
    assert execution is not None and execution.error == "bad\ufffd\ufffd"


async def test_a_new_call_executes_then_replays_its_recorded_result(store: Store) -> None:
    execution_id, attempt = await begin(store)
    assert (await store.decide(RT, execution_id, attempt, call(0, title="a"))).kind == "execute"
    entry = (await store.get_execution(RT, execution_id)).log[0]  # type: ignore[union-attr]
    assert (entry.state, entry.args) == ("executing", {"title": "a"})  # persisted before the call runs
    assert await store.record_result(RT, execution_id, attempt, 0, dumps({"id": 7}))
    replay = await store.decide(RT, execution_id, attempt, call(0, title="a"))
    assert (replay.kind, replay.result) == ("replay", {"id": 7})
    entry = (await store.get_execution(RT, execution_id)).log[0]  # type: ignore[union-attr]
    assert (entry.state, entry.result) == ("applied", {"id": 7})


async def test_an_executing_entry_runs_again_after_a_crash(store: Store) -> None:
    execution_id, attempt = await begin(store)
    assert (await store.decide(RT, execution_id, attempt, call(0))).kind == "execute"
    await aged()
    claim = await store.claim_stale(RT, execution_id, timedelta(0))
    assert claim is not None and claim.attempt == attempt + 1
    assert (await store.decide(RT, execution_id, claim.attempt, call(0))).kind == "execute"


async def test_an_ephemeral_call_runs_on_every_pass(store: Store) -> None:
    execution_id, attempt = await begin(store)
    assert (await store.decide(RT, execution_id, attempt, call(0, "read", ephemeral=True))).kind == "execute"
    assert await store.record_result(RT, execution_id, attempt, 0, None)
    assert (await store.decide(RT, execution_id, attempt, call(0, "read", ephemeral=True))).kind == "execute"


async def test_a_recorded_error_is_raised_again(store: Store) -> None:
    execution_id, attempt = await begin(store)
    assert (await store.decide(RT, execution_id, attempt, call(0))).kind == "execute"
    assert await store.record_error(RT, execution_id, attempt, 0, dumps({"error": "nope", "kind": "ValueError"}))
    again = await store.decide(RT, execution_id, attempt, call(0))
    assert (again.kind, again.result) == ("raise", {"error": "nope", "kind": "ValueError"})


@pytest.mark.parametrize(
    "other",
    [call(0, "delete", title="a"), call(0, title="b")],
    ids=["other-method", "other-arguments"],
)
async def test_divergence_fails_the_run_at_that_call(store: Store, other: Call) -> None:
    execution_id, attempt = await begin(store)
    await store.decide(RT, execution_id, attempt, call(0, title="a"))
    await store.record_result(RT, execution_id, attempt, 0, dumps(1))
    verdict = await store.decide(RT, execution_id, attempt, other)
    assert verdict.kind == "fail" and "divergence" in verdict.message
    execution = await store.get_execution(RT, execution_id)
    assert execution is not None and execution.status == "error"
    assert "divergence" in (execution.error or "")


async def test_unrecordable_arguments_fail_the_run(store: Store) -> None:
    execution_id, attempt = await begin(store)
    bad = Call(seq=0, connector="items", method="create", args_json=None, args_error="too large to record")
    verdict = await store.decide(RT, execution_id, attempt, bad)
    assert verdict.kind == "fail"
    assert (await store.get_execution(RT, execution_id)).status == "error"  # type: ignore[union-attr]


async def test_fail_at_marks_the_entry_and_the_run(store: Store) -> None:
    execution_id, attempt = await begin(store)
    await store.decide(RT, execution_id, attempt, call(0))
    assert await store.fail_at(RT, execution_id, attempt, 0, "result too large")
    execution = await store.get_execution(RT, execution_id)
    assert execution is not None
    assert (execution.status, execution.log[0].state) == ("error", "error")


async def test_complete_and_fail_end_the_pass_once(store: Store) -> None:
    done, attempt = await begin(store)
    assert await store.complete(RT, done, attempt, dumps({"ok": True}), ["line"])
    assert not await store.complete(RT, done, attempt, dumps(2), [])  # already ended: a compare-and-set
    execution = await store.get_execution(RT, done)
    assert execution is not None
    assert (execution.status, execution.result, execution.logs) == ("completed", {"ok": True}, ["line"])
    failed, attempt = await begin(store)
    assert await store.fail(RT, failed, attempt, "boom", [])
    assert not await store.fail(RT, failed, attempt, "again", [])
    assert (await store.get_execution(RT, failed)).error == "boom"  # type: ignore[union-attr]


# -- fencing ----------------------------------------------------------------------


async def test_a_pass_that_lost_its_run_writes_nothing(store: Store) -> None:
    execution_id, old = await begin(store)
    await store.decide(RT, execution_id, old, call(0))
    await aged()
    claim = await store.claim_stale(RT, execution_id, timedelta(0))
    assert claim is not None
    assert (await store.decide(RT, execution_id, old, call(1))).kind == "lost"
    assert not await store.record_result(RT, execution_id, old, 0, dumps(1))
    assert not await store.record_error(RT, execution_id, old, 0, dumps({"error": "x", "kind": "ValueError"}))
    assert not await store.fail_at(RT, execution_id, old, 0, "x")
    assert not await store.pause(RT, execution_id, old)
    assert not await store.complete(RT, execution_id, old, dumps(1), [])
    assert not await store.fail(RT, execution_id, old, "x", [])
    assert not await store.heartbeat(RT, execution_id, old)
    execution = await store.get_execution(RT, execution_id)
    assert execution is not None
    assert (execution.status, execution.log[0].state, len(execution.log)) == ("running", "executing", 1)
    assert await store.heartbeat(RT, execution_id, claim.attempt)


async def test_claim_stale_takes_only_a_run_with_no_sign_of_life(store: Store) -> None:
    execution_id, attempt = await begin(store)
    assert await store.claim_stale(RT, execution_id, timedelta(hours=1)) is None
    assert await store.heartbeat(RT, execution_id, attempt)
    await aged()
    claim = await store.claim_stale(RT, execution_id, timedelta(0))
    assert claim is not None and claim.execution.id == execution_id
    paused, _ = await paused_with(store, 1)
    await aged()
    assert await store.claim_stale(RT, paused, timedelta(0)) is None  # only running runs are recovered


async def test_only_one_of_many_concurrent_claims_wins(store_factory: Callable[[], Store]) -> None:
    stores = [store_factory() for _ in range(4)]
    for one in stores:
        await one.open()
    execution_id, _ = await begin(stores[0])
    await aged()
    claims = await asyncio.gather(*(one.claim_stale(RT, execution_id, timedelta(0)) for one in stores * 3))
    won = [c for c in claims if c is not None]
    # Each claim bumps the attempt, so later claims may win again, but never two with one attempt.
    assert len({c.attempt for c in won}) == len(won) >= 1
    for one in stores:
        await one.close()


# -- approvals ----------------------------------------------------------------------


async def test_a_gated_call_pauses_and_is_listed_pending(store: Store) -> None:
    execution_id, _ = await paused_with(store, 1)
    execution = await store.get_execution(RT, execution_id)
    assert execution is not None and execution.status == "paused"
    pending = await store.list_pending(RT, execution_id)
    assert [(p.seq, p.connector, p.method, p.args) for p in pending] == [(1, "items", "create", {"title": "t1"})]
    assert [p.execution_id for p in await store.list_pending(RT)] == [execution_id]


async def test_approval_resumes_under_a_new_attempt_and_executes_once(store: Store) -> None:
    execution_id, attempt = await paused_with(store, 1)
    settled = await store.settle(RT, execution_id, 1, decision())
    assert settled.kind == "resumed" and settled.claim is not None
    new = settled.claim.attempt
    assert new > attempt
    assert await store.list_pending(RT) == []
    assert (await store.decide(RT, execution_id, new, call(0, "read"))).kind == "replay"
    assert (await store.decide(RT, execution_id, new, call(1, gated=True, title="t1"))).kind == "execute"
    assert await store.record_result(RT, execution_id, new, 1, dumps({"id": 1}))
    entry = (await store.get_execution(RT, execution_id)).log[1]  # type: ignore[union-attr]
    assert entry.state == "applied"
    assert entry.decision is not None and (entry.decision.kind, entry.decision.by) == ("approve", "ana")


async def test_the_open_read_and_a_settlement_claim_hold_only_open_entries_and_get_log_holds_all(
    store: Store,
) -> None:
    """A decision checks the run's open entries only (pending or executing), so an approve after
    thousands of calls reads a few; a pass that replays reads every entry with `get_log`."""
    execution_id, attempt = await begin(store)
    for seq in range(3):
        assert (await store.decide(RT, execution_id, attempt, call(seq, "read", n=seq))).kind == "execute"
        assert await store.record_result(RT, execution_id, attempt, seq, dumps({"n": seq}))
    assert (await store.decide(RT, execution_id, attempt, call(4, gated=True, title="b"))).kind == "pause"
    assert (await store.decide(RT, execution_id, attempt, call(3, gated=True, title="a"))).kind == "pause"
    assert await store.pause(RT, execution_id, attempt)
    whole = await store.get_execution(RT, execution_id)
    opened = await store.get_open_execution(RT, execution_id)
    assert whole is not None and opened is not None
    assert [e.seq for e in whole.log] == [0, 1, 2, 3, 4]
    assert [(e.seq, e.state) for e in opened.log] == [(3, "pending"), (4, "pending")]
    assert (opened.status, opened.code, opened.connectors) == (whole.status, whole.code, whole.connectors)
    assert [e for e in whole.log if e.seq >= 3] == opened.log
    assert await store.get_log(RT, execution_id) == whole.log
    assert await store.get_open_execution(RT, "no-such-run") is None
    assert await store.get_log(RT, "no-such-run") == []
    assert (await store.settle(RT, execution_id, 4, decision())).kind == "waiting"
    settled = await store.settle(RT, execution_id, 3, decision())
    assert settled.kind == "resumed" and settled.claim is not None
    assert [e.seq for e in settled.claim.execution.log if e.state not in ("pending", "executing")] == []
    assert {3, 4} <= {e.seq for e in settled.claim.execution.log}
    log = await store.get_log(RT, execution_id)
    assert [(e.seq, e.state, e.decision is not None) for e in log] == [
        (0, "applied", False),
        (1, "applied", False),
        (2, "applied", False),
        (3, "pending", True),
        (4, "pending", True),
    ]
    assert [e.result for e in log[:3]] == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_an_edited_approval_executes_with_the_edited_arguments(store: Store) -> None:
    execution_id, _ = await paused_with(store, 1)
    settled = await store.settle(RT, execution_id, 1, decision(args={"title": "edited"}))
    assert settled.claim is not None
    verdict = await store.decide(RT, execution_id, settled.claim.attempt, call(1, gated=True, title="t1"))
    assert verdict.kind == "execute"
    assert verdict.args_json is not None and "edited" in verdict.args_json
    entry = (await store.get_execution(RT, execution_id)).log[1]  # type: ignore[union-attr]
    assert entry.args == {"title": "t1"}  # the program's arguments stay the replay key
    assert entry.decision is not None and entry.decision.args == {"title": "edited"}


async def test_a_decided_seq_is_stale_and_changes_nothing(store: Store) -> None:
    execution_id, _ = await paused_with(store, 1)
    assert (await store.settle(RT, execution_id, 1, decision())).kind == "resumed"
    stale = await store.settle(RT, execution_id, 1, decision(by="bob"))
    assert (stale.kind, stale.status) == ("stale", "running")
    entry = (await store.get_execution(RT, execution_id)).log[1]  # type: ignore[union-attr]
    assert entry.decision is not None and entry.decision.by == "ana"


async def test_settling_a_seq_that_is_not_pending_is_stale(store: Store) -> None:
    execution_id, _ = await paused_with(store, 1)
    for seq in (0, 2, 99):  # applied, absent, absent
        settled = await store.settle(RT, execution_id, seq, decision())
        assert settled.kind == "stale" and [p.seq for p in settled.pending] == [1]
    gone = await store.settle(RT, "no-such-run", 1, decision())
    assert (gone.kind, gone.status) == ("stale", "deleted")


async def test_a_batch_resumes_only_when_every_action_is_decided(store: Store) -> None:
    execution_id, _ = await paused_with(store, 1, 2, 3)
    first = await store.settle(RT, execution_id, 2, decision())
    assert (first.kind, first.status, [p.seq for p in first.pending]) == ("waiting", "paused", [1, 3])
    second = await store.settle(RT, execution_id, 1, decision("reject"), error_json=dumps({"error": "no"}))
    assert second.kind == "waiting" and [p.seq for p in second.pending] == [3]
    last = await store.settle(RT, execution_id, 3, decision())
    assert last.kind == "resumed" and last.claim is not None
    attempt = last.claim.attempt
    assert (await store.decide(RT, execution_id, attempt, call(1, gated=True, title="t1"))).kind == "raise"
    assert (await store.decide(RT, execution_id, attempt, call(2, gated=True, title="t2"))).kind == "execute"


async def test_a_reject_that_ends_the_run(store: Store) -> None:
    execution_id, attempt = await paused_with(store, 1, 2)
    settled = await store.settle(RT, execution_id, 1, decision("reject"), end_error="Action rejected by ana")
    assert (settled.kind, settled.status) == ("ended", "rejected")
    execution = await store.get_execution(RT, execution_id)
    assert execution is not None
    assert (execution.status, execution.error) == ("rejected", "Action rejected by ana")
    assert [e.state for e in execution.log] == ["applied", "reverted", "reverted"]
    assert await store.list_pending(RT) == []
    assert (await store.settle(RT, execution_id, 2, decision())).kind == "stale"
    assert not await store.heartbeat(RT, execution_id, attempt)


async def test_only_one_of_many_concurrent_decisions_wins(store_factory: Callable[[], Store]) -> None:
    stores = [store_factory() for _ in range(4)]
    for one in stores:
        await one.open()
    execution_id, _ = await paused_with(stores[0], 1)
    attempts = []
    for i, one in enumerate(stores * 3):
        if i % 2:
            attempts.append(one.settle(RT, execution_id, 1, decision(by=f"h{i}")))
        else:
            attempts.append(one.settle(RT, execution_id, 1, decision("reject", by=f"h{i}"), end_error="rejected"))
    results = await asyncio.gather(*attempts)
    assert sum(r.kind != "stale" for r in results) == 1
    for one in stores:
        await one.close()


# -- expiry ----------------------------------------------------------------------


async def test_expire_ends_old_paused_runs_and_fences_running_ones(store: Store) -> None:
    paused, _ = await paused_with(store, 1)
    running, attempt = await begin(store)
    assert await store.expire(RT, timedelta(hours=1)) == []
    await aged()
    assert await store.expire(RT, timedelta(0), running=False) == [paused]
    execution = await store.get_execution(RT, paused)
    assert execution is not None and execution.status == "rejected"
    assert [e.state for e in execution.log] == ["applied", "reverted"]
    await aged()
    assert await store.expire(RT, timedelta(0)) == [running]
    assert (await store.get_execution(RT, running)).status == "error"  # type: ignore[union-attr]
    assert not await store.complete(RT, running, attempt, dumps(1), [])  # the old pass is fenced


# -- rollback --------------------------------------------------------------------


async def test_rollback_claims_reverts_and_finishes(store: Store) -> None:
    execution_id, attempt = await paused_with(store, 1)
    claim = await store.claim_rollback(RT, execution_id, timedelta(minutes=1))
    assert claim is not None and claim.execution.status == "rolling_back"
    assert await store.claim_rollback(RT, execution_id, timedelta(minutes=1)) is None  # one rollback at a time
    assert (await store.settle(RT, execution_id, 1, decision())).kind == "stale"  # no approval while rolling back
    await aged()
    assert await store.claim_stale(RT, execution_id, timedelta(0)) is None  # nor a recovery
    rollback = decision("rollback")
    assert await store.begin_revert(RT, execution_id, claim.attempt, 0, rollback)
    assert (await store.get_execution(RT, execution_id)).log[0].state == "reverting"  # type: ignore[union-attr]
    assert await store.end_revert(RT, execution_id, claim.attempt, 0, True)
    assert not await store.begin_revert(RT, execution_id, claim.attempt, 0, rollback)  # never twice
    assert await store.finish_rollback(RT, execution_id, claim.attempt, rollback)
    execution = await store.get_execution(RT, execution_id)
    assert execution is not None
    assert execution.status == "rolled_back"
    assert [e.state for e in execution.log] == ["reverted", "reverted"]
    assert execution.log[0].rollback is not None and execution.log[0].rollback.kind == "rollback"
    assert not await store.heartbeat(RT, execution_id, attempt)


async def test_a_failed_revert_leaves_the_entry_applied(store: Store) -> None:
    execution_id, _ = await paused_with(store, 1)
    claim = await store.claim_rollback(RT, execution_id, timedelta(minutes=1))
    assert claim is not None
    assert await store.begin_revert(RT, execution_id, claim.attempt, 0, decision("rollback"))
    assert await store.end_revert(RT, execution_id, claim.attempt, 0, False)
    assert (await store.get_execution(RT, execution_id)).log[0].state == "applied"  # type: ignore[union-attr]


async def test_a_dead_rollback_is_taken_over_and_the_old_owner_fenced(store: Store) -> None:
    execution_id, _ = await paused_with(store, 1)
    first = await store.claim_rollback(RT, execution_id, timedelta(minutes=1))
    assert first is not None
    assert await store.begin_revert(RT, execution_id, first.attempt, 0, decision("rollback"))
    await aged()
    second = await store.claim_rollback(RT, execution_id, timedelta(0))
    assert second is not None and second.attempt > first.attempt
    assert not await store.end_revert(RT, execution_id, first.attempt, 0, True)
    assert not await store.finish_rollback(RT, execution_id, first.attempt, decision("rollback"))
    # The interrupted revert is visible to the new owner, which decides whether to retry it.
    assert second.execution.log[0].state == "reverting"
    assert await store.begin_revert(RT, execution_id, second.attempt, 0, decision("rollback"))


async def test_a_running_run_cannot_be_rolled_back(store: Store) -> None:
    execution_id, _ = await begin(store)
    await aged()
    assert await store.claim_rollback(RT, execution_id, timedelta(0)) is None


# -- deletion, pruning, snippets ----------------------------------------------------


async def test_delete_returns_the_status_it_had(store: Store) -> None:
    execution_id, _ = await paused_with(store, 1)
    assert await store.delete_execution(RT, execution_id) == "paused"
    assert await store.get_execution(RT, execution_id) is None
    assert await store.list_pending(RT) == []
    assert await store.delete_execution(RT, execution_id) is None


async def test_prune_keeps_the_newest_terminal_runs_and_the_excluded_one(store: Store) -> None:
    ids = []
    for _ in range(4):
        execution_id, attempt = await begin(store)
        assert await store.complete(RT, execution_id, attempt, dumps(1), [])
        ids.append(execution_id)
    running, _ = await begin(store)
    assert await store.prune_executions(RT, keep=1, exclude=ids[0]) == 2
    assert {e.id for e in await store.list_executions(RT)} == {ids[0], ids[3], running}


async def test_snippets_are_saved_replaced_listed_and_deleted(store: Store) -> None:
    saved_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    snippet = Snippet("weekly", "Weekly report", "return 1", saved_at, None, ["items"])
    await store.save_snippet(RT, snippet, None)
    schema = {"type": "object", "properties": {"week": {"type": "integer"}}}
    await store.save_snippet(RT, Snippet("weekly", "v2", "return 2", saved_at, schema, ["items"]), dumps(schema))
    await store.save_snippet(RT, Snippet("alpha", "", "return 3", saved_at, None, []), None)
    got = await store.get_snippet(RT, "weekly")
    assert got is not None
    assert (got.description, got.code, got.input_schema, got.connectors) == ("v2", "return 2", schema, ["items"])
    assert got.saved_at == saved_at
    assert [s.name for s in await store.list_snippets(RT)] == ["alpha", "weekly"]
    assert await store.list_snippets("other") == []
    assert await store.delete_snippet(RT, "weekly")
    assert not await store.delete_snippet(RT, "weekly")
    assert await store.get_snippet(RT, "weekly") is None


# -- checkpoints ------------------------------------------------------------------


def checkpoint(attempt: int, state: bytes = b"\x00state\xff" * 64) -> StoredCheckpoint:
    return StoredCheckpoint(attempt, "binding", "digest", '{"next_seq": 2}', state)


async def paused_with_checkpoint(store: Store, stored: StoredCheckpoint | None = None) -> tuple[str, int]:
    execution_id, attempt = await begin(store)
    assert (await store.decide(RT, execution_id, attempt, call(1, gated=True, title="t"))).kind == "pause"
    assert await store.pause(RT, execution_id, attempt, stored or checkpoint(attempt))
    return execution_id, attempt


async def test_a_pause_stores_a_checkpoint_the_resume_takes_once(store: Store) -> None:
    execution_id, attempt = await paused_with_checkpoint(store)
    settled = await store.settle(RT, execution_id, 1, decision())
    assert settled.claim is not None
    assert await store.take_checkpoint(RT, execution_id, attempt) is None  # the old attempt no longer owns the run
    taken = await store.take_checkpoint(RT, execution_id, settled.claim.attempt)
    assert taken == checkpoint(attempt)  # every byte as written
    assert await store.take_checkpoint(RT, execution_id, settled.claim.attempt) is None


async def test_a_pause_without_a_checkpoint_drops_the_earlier_one(store: Store) -> None:
    execution_id, _ = await paused_with_checkpoint(store)
    settled = await store.settle(RT, execution_id, 1, decision())
    assert settled.claim is not None
    again = settled.claim.attempt
    assert (await store.decide(RT, execution_id, again, call(2, gated=True, title="u"))).kind == "pause"
    assert await store.pause(RT, execution_id, again)
    resumed = await store.settle(RT, execution_id, 2, decision())
    assert resumed.claim is not None
    assert await store.take_checkpoint(RT, execution_id, resumed.claim.attempt) is None


async def test_a_pass_that_lost_its_run_stores_no_checkpoint(store: Store) -> None:
    execution_id, attempt = await begin(store)
    assert (await store.decide(RT, execution_id, attempt, call(0, gated=True, title="t"))).kind == "pause"
    await aged()
    claim = await store.claim_stale(RT, execution_id, timedelta(0))
    assert claim is not None
    assert not await store.pause(RT, execution_id, attempt, checkpoint(attempt))
    assert await store.take_checkpoint(RT, execution_id, claim.attempt) is None


async def test_ending_a_paused_run_any_way_drops_its_checkpoint(store: Store) -> None:
    rejected, _ = await paused_with_checkpoint(store)
    assert (await store.settle(RT, rejected, 1, decision("reject"), end_error="no")).kind == "ended"
    rolled_back, _ = await paused_with_checkpoint(store)
    assert await store.claim_rollback(RT, rolled_back, timedelta(minutes=1)) is not None
    deleted, _ = await paused_with_checkpoint(store)
    assert await store.delete_execution(RT, deleted) == "paused"
    expired, _ = await paused_with_checkpoint(store)
    await aged()
    assert expired in await store.expire(RT, timedelta(0))
    # Each drop is of that run's checkpoint only (the rows themselves are counted in test_checkpoints.py).
    kept, _ = await paused_with_checkpoint(store, checkpoint(1, b"kept"))
    settled = await store.settle(RT, kept, 1, decision())
    assert settled.claim is not None
    taken = await store.take_checkpoint(RT, kept, settled.claim.attempt)
    assert taken is not None and taken.state == b"kept"
