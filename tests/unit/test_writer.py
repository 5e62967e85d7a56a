"""The ordered write-behind against a fake store: per-key order, retries through
transient errors, real errors dropped, bounded concurrency, the journal."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from callcenter.db.store import retrying
from callcenter.db.writer import OrderedWriter

AWAY = asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")


class FakeStore:
    """Records every write that succeeds; fails on demand."""

    def __init__(self) -> None:
        self.done: list[tuple[str, Any]] = []
        self.attempts: list[tuple[str, Any]] = []
        self.failures: dict[Any, list[BaseException]] = {}  # value -> errors to raise first
        self.gates: dict[Any, asyncio.Event] = {}  # value -> wait for it before writing
        self.in_flight = 0
        self.most_in_flight = 0
        self._changed = asyncio.Condition()

    async def until(self, condition: Any) -> None:
        """Wait until ``condition()`` holds (checked whenever a write starts or ends)."""
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(condition)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def put(self, key: str, value: Any, *, at: datetime | None = None) -> None:
        self.attempts.append((key, value))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await self._notify()
        try:
            name = repr(value)  # lists are values too
            gate = next((g for v, g in self.gates.items() if repr(v) == name), None)
            if gate is not None:
                await gate.wait()
            errors = next((e for v, e in self.failures.items() if repr(v) == name), None)
            if errors:
                raise errors.pop(0)
            self.done.append((key, value if at is None else (value, at)))
        finally:
            self.in_flight -= 1
            await self._notify()

    def of(self, key: str) -> list[Any]:
        return [v for k, v in self.done if k == key]


def fast(store: Any, **kwargs: Any) -> OrderedWriter:
    return OrderedWriter(store, first_delay_s=0.001, max_delay_s=0.01, **kwargs)


async def test_writes_of_one_key_keep_their_order_and_keys_run_side_by_side() -> None:
    store = FakeStore()
    writer = fast(store)
    store.gates["a0"] = asyncio.Event()  # key a is stuck on its first write
    for i in range(5):
        writer.submit("a", "put", "a", f"a{i}")
        writer.submit("b", "put", "b", f"b{i}")
    assert writer.pending() == 10  # submit returned at once, nothing written yet
    await store.until(lambda: len(store.of("b")) == 5)  # b is not held up by a
    assert store.of("a") == []
    store.gates["a0"].set()
    assert await writer.flush(5)
    assert store.of("a") == [f"a{i}" for i in range(5)]
    assert store.of("b") == [f"b{i}" for i in range(5)]
    assert writer.pending() == 0 and writer.written == 10


async def test_a_transient_error_retries_the_head_write_until_it_succeeds() -> None:
    store = FakeStore()
    store.failures["1"] = [AWAY, ConnectionRefusedError(), AWAY,
                           asyncpg.exceptions.CannotConnectNowError("starting up")]
    writer = fast(store)
    for value in ("1", "2", "3"):
        writer.submit("call", "put", "call", value)
    assert await writer.flush(5)
    assert store.of("call") == ["1", "2", "3"]
    assert [v for _, v in store.attempts] == ["1"] * 5 + ["2", "3"]  # 2 waited behind 1
    assert writer.retries == 4 and writer.dropped == 0


async def test_a_real_error_drops_that_write_only(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    store.failures["bad"] = [asyncpg.UniqueViolationError("duplicate key")]
    writer = fast(store)
    for value in ("1", "bad", "3"):
        writer.submit("call-7", "put", "call-7", value)
    with caplog.at_level(logging.ERROR, logger="callcenter.db.writer"):
        assert await writer.flush(5)
    assert store.of("call-7") == ["1", "3"]
    assert writer.dropped == 1 and writer.pending() == 0
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "put" in record.getMessage() and "call-7" in record.getMessage()


async def test_store_retries_inside_a_write_do_not_reorder_it() -> None:
    """A method with its own retries (store.retrying) that gives up is retried by the
    writer as a whole; the key's next write never overlaps or overtakes it."""
    log: list[str] = []
    failures = {"first": 5}

    class RetryingStore:
        @retrying(attempts=2, first_delay_s=0.001)
        async def put(self, value: str) -> None:
            log.append(f"try {value}")
            if failures.get(value, 0) > 0:
                failures[value] -= 1
                raise ConnectionResetError("server went away")
            log.append(f"wrote {value}")

    writer = fast(RetryingStore())
    writer.submit("k", "put", "first")
    writer.submit("k", "put", "second")
    assert await writer.flush(5)
    assert log == ["try first"] * 6 + ["wrote first", "try second", "wrote second"]


async def test_concurrency_is_bounded_and_back_off_frees_the_slot() -> None:
    store = FakeStore()
    gate = asyncio.Event()
    writer = fast(store, concurrency=2)
    for i in range(6):
        store.gates[i] = gate
        writer.submit(f"k{i}", "put", f"k{i}", i)
    await store.until(lambda: store.in_flight == 2)
    assert not await writer.flush(0.05)  # the others wait for a free slot meanwhile
    assert store.in_flight == 2 and len(store.attempts) == 2
    gate.set()
    assert await writer.flush(5)
    assert store.most_in_flight == 2 and len(store.done) == 6


async def test_flush_waits_only_for_what_was_submitted_before_it() -> None:
    store = FakeStore()
    writer = fast(store)
    writer.submit("a", "put", "a", 1)
    later = asyncio.Event()
    store.gates[2] = later
    flushed = asyncio.create_task(writer.flush(5))
    await asyncio.sleep(0)
    writer.submit("a", "put", "a", 2)  # after the flush began: not waited for
    assert await flushed
    assert store.of("a") == [1] and writer.pending() == 1
    assert not await writer.flush(0.05)  # times out while 2 is stuck
    later.set()
    assert await writer.flush(5)


async def test_on_change_reports_pending() -> None:
    store = FakeStore()
    writer = fast(store)
    seen: list[int] = []
    writer.on_change = lambda: seen.append(writer.pending())
    writer.submit("a", "put", "a", 1)
    writer.submit("a", "put", "a", 2)
    assert await writer.flush(5)
    assert seen == [1, 2, 1, 0]


async def test_close_journals_pending_writes_and_start_replays_them_in_order(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "writes.jsonl"
    down = FakeStore()
    down.failures["c1"] = [AWAY] * 10_000  # the database never comes back this run
    writer = fast(down, journal=journal)
    at = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    writer.submit("c", "put", "c", "c1", at=at)
    writer.submit("c", "put", "c", "c2", at=at + timedelta(seconds=1))
    writer.submit("d", "put", "d", ["x", {"y": 1}])
    await down.until(lambda: len(down.attempts) > 1)
    await writer.close(timeout_s=0.05)
    assert down.of("c") == [] and down.of("d") == [["x", {"y": 1}]]
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [(e["key"], e["args"][1]) for e in lines] == [("c", "c1"), ("c", "c2")]
    assert lines[0]["kwargs"] == {"at": {"$datetime": "2025-01-02T03:04:05.678000+00:00"}}

    up = FakeStore()
    again = fast(up, journal=journal)
    await again.start()
    assert not journal.exists()
    again.submit("c", "put", "c", "c3")  # new writes queue behind the replayed ones
    assert await again.flush(5)
    assert up.of("c") == [("c1", at), ("c2", at + timedelta(seconds=1)), "c3"]
    await again.close()
    assert not journal.exists()  # nothing was left to journal


async def test_a_write_submitted_after_close_goes_to_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "writes.jsonl"
    writer = fast(FakeStore(), journal=journal)
    await writer.close()
    writer.submit("c", "put", "c", "late")
    assert json.loads(journal.read_text())["args"] == ["c", "late"]


async def test_programming_errors_are_refused_at_submit() -> None:
    writer = fast(FakeStore())
    with pytest.raises(AttributeError):
        writer.submit("c", "no_such_method", "c")
    with pytest.raises(TypeError):
        writer.submit("c", "put", "c", object())
    assert writer.pending() == 0


# ---- batches, outages, the write-ahead log ---------------------------------------------


class BatchingStore(FakeStore):
    """A store that takes several writes in one call, all or nothing (a transaction)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[Any]] = []

    async def write_batch(self, writes: list[tuple[str, tuple[Any, ...], dict[str, Any]]]
                          ) -> None:
        self.batches.append([args[1] for _, args, _ in writes])
        done_before = len(self.done)
        try:
            for method, args, kwargs in writes:
                await getattr(self, method)(*args, **kwargs)
        except BaseException:
            del self.done[done_before:]  # rolled back
            raise


async def test_a_batch_holds_the_head_write_of_each_key_and_keeps_each_key_in_order() -> None:
    store = BatchingStore()
    writer = fast(store, concurrency=1, batch_size=10)
    for i in range(3):
        for key in ("a", "b", "c"):
            writer.submit(key, "put", key, f"{key}{i}")
    assert await writer.flush(5)
    assert store.batches == [["a0", "b0", "c0"], ["a1", "b1", "c1"], ["a2", "b2", "c2"]]
    assert [store.of(k) for k in ("a", "b", "c")] == [
        ["a0", "a1", "a2"], ["b0", "b1", "b2"], ["c0", "c1", "c2"]]
    assert writer.written == 9 and writer.batches == 3


async def test_a_batch_with_a_real_error_is_written_one_by_one_and_drops_only_that_write(
) -> None:
    store = BatchingStore()
    store.failures["b0"] = [asyncpg.UniqueViolationError("duplicate key")] * 2
    writer = fast(store, concurrency=1)
    for key in ("a", "b", "c"):
        writer.submit(key, "put", key, f"{key}0")
    writer.submit("b", "put", "b", "b1")
    assert await writer.flush(5)
    assert store.of("a") == ["a0"] and store.of("c") == ["c0"]
    assert store.of("b") == ["b1"]  # b0 dropped, the key went on
    assert writer.dropped == 1 and writer.written == 3


async def test_while_the_database_is_away_one_attempt_probes_and_the_rest_wait() -> None:
    store = FakeStore()
    store.failures["a0"] = [AWAY] * 3
    writer = fast(store, concurrency=4)
    writer.submit("a", "put", "a", "a0")
    await store.until(lambda: len(store.attempts) == 1)  # a0 in flight: it will fail
    for key in ("b", "c", "d"):
        writer.submit(key, "put", key, f"{key}0")
    assert await writer.flush(5)
    # b0, c0, d0 started beside a0 (it had not failed yet); none was tried twice,
    # and a0 alone was retried until the database answered.
    values = [v for _, v in store.attempts]
    assert values.count("a0") == 4 and all(values.count(v) == 1 for v in ("b0", "c0", "d0"))
    assert writer.retries == 3 and writer.dropped == 0


async def test_writes_held_in_an_outage_are_not_tried_until_the_probe_succeeds() -> None:
    store = FakeStore()
    store.failures["a0"] = [AWAY] * 5
    writer = fast(store, concurrency=4)
    writer.submit("a", "put", "a", "a0")
    await store.until(lambda: len(store.attempts) >= 2)  # a0 failed: the writer holds
    for key in ("b", "c", "d"):
        writer.submit(key, "put", key, f"{key}0")
    assert await writer.flush(5)
    values = [v for _, v in store.attempts]
    assert values[:6] == ["a0"] * 6  # nothing else while the database was away
    assert sorted(values[6:]) == ["b0", "c0", "d0"]


async def test_a_killed_run_leaves_its_unfinished_writes_in_the_log_for_the_next_start(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "writes.jsonl"
    down = FakeStore()
    down.failures["c1"] = [AWAY] * 10_000  # the database never comes back this run
    writer = fast(down, journal=journal)
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    writer.submit("c", "put", "c", "c1", at=at)
    writer.submit("c", "put", "c", "c2")
    writer.submit("d", "put", "d", "d1")
    await down.until(lambda: down.of("d") == ["d1"] and len(down.attempts) > 2)
    await asyncio.sleep(0)  # the log is written out on the loop's next iteration
    # Killed here: no close(), no journal; only the write-ahead log is on disk.
    assert not journal.exists()

    up = FakeStore()
    again = fast(up, journal=journal)
    await again.start()
    assert await again.flush(5)
    assert up.of("c") == [("c1", at), "c2"] and up.of("d") == []  # d1 was done
    await again.close()
    assert not journal.exists() and list(tmp_path.iterdir()) == []


async def test_the_log_is_rewritten_once_large_and_keeps_only_what_is_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from callcenter.db import writer as writer_module

    monkeypatch.setattr(writer_module, "_LOG_ROTATE_BYTES", 2000)
    journal = tmp_path / "writes.jsonl"
    store = FakeStore()
    store.gates["stuck"] = asyncio.Event()
    writer = fast(store, journal=journal)
    writer.submit("s", "put", "s", "stuck")
    for i in range(100):
        writer.submit(f"k{i}", "put", f"k{i}", i)
    await store.until(lambda: len(store.done) == 100)
    await asyncio.sleep(0)
    log_file = tmp_path / "writes.jsonl.wal"
    assert len(log_file.read_bytes()) < 2000  # rewritten: done writes are gone
    assert [e["args"] for e in writer_module._unfinished(log_file)] == [["s", "stuck"]]
    store.gates["stuck"].set()
    assert await writer.flush(5)
    await writer.close()


async def test_a_replay_cut_short_is_replayed_first_and_a_torn_line_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    journal = tmp_path / "writes.jsonl"
    older = tmp_path / "writes.jsonl.wal.replaying"  # a start that crashed while replaying
    older.write_text('{"seq": 7, "key": "c", "method": "put", "args": ["c", "c1"], "kwargs": {}}\n')
    log_file = tmp_path / "writes.jsonl.wal"  # then that run's own log, killed mid-line
    log_file.write_text(
        '{"seq": 1, "key": "c", "method": "put", "args": ["c", "c2"], "kwargs": {}}\n'
        '{"seq": 2, "key": "d", "method": "put", "args": ["d", "d1"], "kwargs": {}}\n'
        '{"done": [2]}\n{"seq": 3, "key": "c", "method": "put", "args": ["c", "c3"]')
    store = FakeStore()
    writer = fast(store, journal=journal)
    with caplog.at_level(logging.ERROR, logger="callcenter.db.writer"):
        await writer.start()
    assert await writer.flush(5)
    assert store.of("c") == ["c1", "c2"] and store.of("d") == []
    assert "line 4 unusable" in caplog.text
    assert not older.exists()
    await writer.close()
