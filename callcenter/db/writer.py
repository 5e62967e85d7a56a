"""An ordered write-behind in front of the store, for the telephony side.

A call must never wait on the database, and a database outage must never lose
a write. ``OrderedWriter.submit(key, method, *args, **kwargs)`` returns at once;
in the background the writer calls ``getattr(store, method)(*args, **kwargs)``:

- writes with the same key (a call id, ``agent:<id>``) run strictly in
  submission order, one at a time; different keys run side by side, at most
  ``concurrency`` store calls at once;
- a store with ``write_batch`` (``PgStore``) gets the head writes of up to
  ``batch_size`` keys in one call: one transaction, one connection, one commit
  for them all, instead of one of each per write (what a busy IVR needs: a
  thousand callers at once write thousands of rows a second). One write per key
  per batch, so a batch repeated after its commit was lost repeats each key's
  last write only (which the store's idempotence absorbs). A batch that fails
  with a real error is split: its writes run one by one, so only the bad one is
  dropped;
- a transient error (:func:`callcenter.db.store.is_transient`: the database is
  away or restarting) holds every write back: one attempt at a time probes the
  database with capped exponential back-off, and once it succeeds the backlog
  flows again in order. An outage costs one failed attempt per back-off, not
  one per pending write (a thousand callers' writes retrying on their own
  would busy the event loop the calls run on). A store method's own retries
  (``store.retrying``) happen inside one attempt, so nothing overlaps and
  nothing is reordered;
- any other error is a real one: it is logged with the key and method, that
  write is dropped and the key goes on;
- with a ``journal``, every write is logged when submitted (JSON lines in
  ``<journal>.wal``, written before ``submit`` returns, flushed to disk by a
  background thread) and marked done when written or dropped: a run that is
  killed, even while the database is away, leaves its unfinished writes there,
  and ``start()`` of the next run replays them in order. ``close()`` waits a
  while, then appends what is still pending to the journal itself (datetimes
  tagged) and removes the log. A write cut off in flight is replayed too: store
  writes are idempotent, so one that did commit is harmless to repeat.

A pending write is kept as its encoded line (the log's), decoded when it is
sent: the database gets exactly what a replay would give it, and a backlog of
hundreds of thousands of writes (a minute's outage at a thousand calls) is plain
bytes in tuples, which the garbage collector stops tracking. Held as objects
(and in a deque per call), the backlog made every full collection walk it:
half-second pauses of the event loop the calls run on.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import heapq
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from callcenter.db.store import is_transient

log = logging.getLogger("callcenter.db.writer")

_DATETIME_TAG = "$datetime"
# The log is rewritten (only the writes still pending) once it is this large and
# at least four times what is pending; never while a large backlog is pending
# (an outage), so a rewrite never holds the event loop for long.
_LOG_ROTATE_BYTES = 8 * 1024 * 1024
_LOG_ROTATE_MAX_PENDING = 5000
_LINE_BYTES = 512  # about what one write takes in the log


# A pending write: its seq and its log line. A plain tuple of atomic values (see the
# module doc); the key is the queue's.
_Pending = tuple[int, bytes]
# A write on its way to the store: key, seq, line.
_Sent = tuple[str, int, bytes]


def _line(seq: int, key: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
          ) -> bytes:
    """A write as the log, the journal and the store see it: one JSON line, encoded
    by the C encoder in one pass (datetimes tagged through ``default``)."""
    entry = {"seq": seq, "key": key, "method": method, "args": args, "kwargs": kwargs}
    return (json.dumps(entry, ensure_ascii=False, default=_tag) + "\n").encode()


def _call_of(line: bytes) -> tuple[str, str, tuple[Any, ...], dict[str, Any]]:
    """``(key, method, args, kwargs)`` of an encoded write."""
    entry = json.loads(line)
    return entry["key"], entry["method"], tuple(_decode(entry["args"])), _decode(entry["kwargs"])


def _tag(value: Any) -> Any:
    """``json.dumps``'s ``default``: a datetime as ``{"$datetime": ISO 8601}``."""
    if isinstance(value, datetime):
        return {_DATETIME_TAG: value.isoformat()}
    raise TypeError(f"{type(value).__name__} cannot be journaled")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_DATETIME_TAG}:
            return datetime.fromisoformat(value[_DATETIME_TAG])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


class _WriteLog:
    """The live record of submitted writes: a line per write when submitted, a
    ``{"done": [seq, ...]}`` line when written or dropped. Each append is one
    ``os.write`` before ``submit`` returns (the page cache: a process killed even
    right after an ANSWER loses nothing); then a thread syncs it to disk, one sync
    at a time, so the event loop never waits on the disk. A log that cannot be written
    (disk full) is reported, and the writes still go to the database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.size = 0
        self._syncing = False
        self._unsynced = False
        self._failing = False

    def append(self, line: bytes) -> None:
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            os.write(self._fd, line)
        except OSError as exc:
            if not self._failing:
                log.error("writer: cannot write %s (%r): writes are not journaled", self.path,
                          exc)
            self._failing = True
            return
        if self._failing:
            log.warning("writer: %s written again", self.path)
            self._failing = False
        self.size += len(line)
        self._unsynced = True
        self._sync_soon()

    def done(self, seqs: Iterable[int]) -> None:
        self.append((json.dumps({"done": list(seqs)}) + "\n").encode())

    def _sync_soon(self) -> None:
        if self._syncing or not self._unsynced or self._fd is None:
            return
        fd = os.dup(self._fd)  # the thread's own: the log may be rotated meanwhile
        try:
            future = asyncio.get_running_loop().run_in_executor(None, _sync_and_close, fd)
        except RuntimeError:  # the loop is shutting down without a close(): no thread
            _sync_and_close(fd)
            return
        self._syncing, self._unsynced = True, False
        future.add_done_callback(self._synced)

    def _synced(self, future: asyncio.Future[None]) -> None:
        self._syncing = False
        if not future.cancelled() and future.exception() is not None:
            log.error("writer: cannot sync %s: %r", self.path, future.exception())
        self._sync_soon()

    def rotate(self, pending: Iterable[bytes]) -> None:
        """Replace the log by one holding only the ``pending`` lines (the rest is done).
        Synced by the thread like any append: no fsync on the event loop."""
        fresh = self.path.with_name(self.path.name + ".new")
        data = b"".join(pending)
        fd = os.open(fresh, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, data)
            os.replace(fresh, self.path)
        except OSError:
            os.close(fd)
            raise
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self.size, self._unsynced = fd, len(data), True
        self._sync_soon()

    def remove(self) -> None:
        """Everything it held is done or journaled: drop the log."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _sync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _set_aside(path: Path) -> list[Path]:
    """``path`` renamed to a free ``<name>.replaying[.N]``, after those a replay cut
    short left behind: the files to replay, oldest first."""
    def number(aside: Path) -> int:
        suffix = aside.name.removeprefix(path.name + ".replaying")
        return int(suffix[1:]) if suffix[1:].isdigit() else 0

    aside = sorted(path.parent.glob(glob.escape(path.name) + ".replaying*"), key=number)
    if path.exists():
        free = max((number(a) for a in aside), default=-1) + 1
        target = path.with_name(path.name + ".replaying" + (f".{free}" if free else ""))
        os.replace(path, target)
        aside.append(target)
    return aside


_DONE_PREFIX = '{"done"'  # how a done line starts (a write's starts with its seq or key)


def _unfinished(path: Path) -> Iterator[dict[str, Any]]:
    """The write entries of a journal or log file that no ``done`` line covers, in
    file order, read in two passes line by line (a log left by an outage holds
    hundreds of thousands); unreadable lines are reported and skipped."""
    done: set[int] = set()
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith(_DONE_PREFIX):
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    done.update(int(s) for s in json.loads(line)["done"])
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.startswith(_DONE_PREFIX):
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
            except ValueError as exc:  # a line cut short by a crash, say
                log.error("writer journal %s line %d unusable (%s): %r", path, number, exc,
                          line[:200])
                continue
            if entry.get("seq") not in done:
                yield entry


class OrderedWriter:
    """Write-behind with per-key order and retries through outages (see module doc).

    ``submit`` must be called on the event loop's thread. Call ``start()`` before
    the first ``submit`` so a journal from the last run is replayed first.
    """

    def __init__(
        self,
        store: Any,
        *,
        journal: Path | None = None,
        first_delay_s: float = 0.25,
        max_delay_s: float = 5.0,
        concurrency: int = 2,
        batch_size: int = 100,
    ) -> None:
        self.store = store
        self.journal = journal
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.concurrency = concurrency
        # One write per call when the store cannot take several in one transaction.
        self.batch_size = batch_size if callable(getattr(store, "write_batch", None)) else 1
        self.on_change: Callable[[], None] | None = None
        self._log = _WriteLog(journal.with_name(journal.name + ".wal")) if journal else None
        # Per key, in submission order. Tuples, not deques: untracked by the garbage
        # collector like their items (a key holds a few writes; appending copies them).
        self._queues: dict[str, tuple[_Pending, ...]] = {}
        self._ready: deque[str] = deque()  # keys whose head write may be sent, oldest first
        self._waiting: set[str] = set()  # the keys in _ready
        self._in_flight = 0  # store calls under way
        self._dispatch_due = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._holding = False  # the database is away: one probe at a time
        self._open_seqs: list[int] = []  # heap of submitted seqs, done ones removed lazily
        self._done_seqs: set[int] = set()
        self._alone: set[int] = set()  # seqs to send by themselves: their batch failed
        self._seq = 0
        self._pending = 0
        self._progress = asyncio.Event()
        self._closed = False
        # Counters, for metrics and tests.
        self.written = 0
        self.dropped = 0
        self.retries = 0
        self.batches = 0

    # ---- API ------------------------------------------------------------------------

    def submit(self, key: str, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Queue ``store.<method>(*args, **kwargs)`` behind the key's earlier writes.

        Never blocks and never raises for database trouble; raises
        ``AttributeError`` for a method the store does not have and ``TypeError``
        for arguments the journal could not hold (programming errors)."""
        if not callable(getattr(self.store, method, None)):
            raise AttributeError(f"store has no method {method!r}")
        seq = self._seq + 1
        line = _line(seq, key, method, args, kwargs)  # what cannot be journaled fails now
        self._seq = seq
        if self._closed:
            log.error("writer closed: journaling %s %s for %s", method, args, key)
            self._append_journal([line])
            return
        if self._log is not None:
            self._log.append(line)
        heapq.heappush(self._open_seqs, seq)
        queue = self._queues[key] = (*self._queues.get(key, ()), (seq, line))
        if len(queue) == 1:
            self._make_ready(key)
        self._changed(+1)
        if not self._dispatch_due:  # once per loop iteration: what comes meanwhile batches
            self._dispatch_due = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    async def start(self) -> None:
        """Replay (submit again, in order) the writes a previous run journaled at its
        close or left unfinished in its log (killed); then forget those files."""
        if self.journal is None:
            return
        # Moved aside first: this run's own log takes the old log's name.
        sources = [*_set_aside(self.journal),
                   *(_set_aside(self._log.path) if self._log is not None else [])]
        count = sum(self._resubmit(path) for path in sources)
        for path in sources:  # their writes are in this run's log now
            path.unlink()
        if count:
            log.info("writer: replaying %d journaled writes", count)

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every write submitted so far is done (written, or dropped as
        a real error). False if ``timeout_s`` passed first."""
        target = self._seq
        try:
            async with asyncio.timeout(timeout_s):
                while self._oldest_open() <= target:
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, timeout_s: float = 10.0) -> None:
        """Flush for up to ``timeout_s``, then stop and journal what is still pending."""
        if not await self.flush(timeout_s):
            log.warning("writer: %d writes still pending after %.0f s", self._pending, timeout_s)
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        left = self._pending_lines()
        self._queues.clear()
        self._ready.clear()
        self._waiting.clear()
        if left:
            self._append_journal(left)
            self._changed(-len(left))
        if self._log is not None:
            self._log.remove()  # what it held is written or in the journal now

    def pending(self) -> int:
        """Writes submitted and not yet done (including those being retried)."""
        return self._pending

    # ---- scheduling ---------------------------------------------------------------

    def _make_ready(self, key: str) -> None:
        if key not in self._waiting:
            self._waiting.add(key)
            self._ready.append(key)

    def _dispatch(self) -> None:
        """Start store calls for ready keys while slots are free (none while holding)."""
        self._dispatch_due = False
        while (self._ready and self._in_flight < self.concurrency and not self._holding
               and not self._closed):
            batch = self._next_batch()
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _next_batch(self) -> list[_Sent]:
        """The head writes of the oldest ready keys; a write that must run alone
        makes a batch of its own."""
        batch: list[_Sent] = []
        while self._ready and len(batch) < self.batch_size:
            key = self._ready[0]
            seq, line = self._queues[key][0]
            alone = seq in self._alone
            if alone and batch:
                break
            self._waiting.discard(self._ready.popleft())
            batch.append((key, seq, line))
            if alone:
                break
        return batch

    async def _run(self, batch: list[_Sent]) -> None:
        try:
            try:
                await self._attempt(batch)
            except Exception as exc:
                await self._failed(batch, exc)
            else:
                self._finish(batch)
        finally:
            self._in_flight -= 1
            self._dispatch()

    async def _attempt(self, batch: list[_Sent]) -> None:
        calls = [_call_of(line) for _, _, line in batch]
        if len(calls) == 1:
            _, method, args, kwargs = calls[0]
            await getattr(self.store, method)(*args, **kwargs)
        else:
            self.batches += 1
            await self.store.write_batch([(method, args, kwargs) for _, method, args, kwargs
                                          in calls])

    async def _failed(self, batch: list[_Sent], error: Exception) -> None:
        if is_transient(error):
            if self._holding:  # another attempt probes already: wait behind it
                self._give_back(batch)
                return
            await self._probe(batch, error)
        elif len(batch) > 1:
            log.warning("writer: a batch of %d writes failed (%r): writing them one by one",
                        len(batch), error)
            self._alone.update(seq for _, seq, _ in batch)
            self._give_back(batch)
        else:
            key, method, _, _ = _call_of(batch[0][2])
            self.dropped += 1
            log.error("writer: %s for %s failed, write dropped: %r", method, key, error,
                      exc_info=error)
            self._finish(batch, written=False)

    async def _probe(self, batch: list[_Sent], error: Exception) -> None:
        """The database is away: hold every other write and try this batch again with
        capped back-off until it goes through (or fails for real)."""
        self._holding = True
        began = time.monotonic()
        log.warning("writer: database unavailable (%r): holding %d writes, retrying",
                    error, self._pending)
        delay = 0.0  # at once first: one broken pooled connection is not an outage
        try:
            while True:
                self.retries += 1
                await asyncio.sleep(delay)
                delay = min(max(delay * 2, self.first_delay_s), self.max_delay_s)
                try:
                    await self._attempt(batch)
                except Exception as exc:
                    if is_transient(exc):
                        log.debug("writer: still unavailable (%r)", exc)
                        continue
                    self._holding = False
                    await self._failed(batch, exc)
                    return
                self._finish(batch)
                log.warning("writer: database back after %.1f s; %d writes pending",
                            time.monotonic() - began, self._pending)
                return
        finally:
            self._holding = False

    def _give_back(self, batch: list[_Sent]) -> None:
        """Writes not done: their keys go back to the front of the line, in order."""
        for key, _, _ in reversed(batch):
            if key not in self._waiting:
                self._waiting.add(key)
                self._ready.appendleft(key)

    def _finish(self, batch: list[_Sent], *, written: bool = True) -> None:
        for key, seq, _ in batch:
            queue = self._queues[key][1:]
            if queue:
                self._queues[key] = queue
                self._make_ready(key)
            else:
                del self._queues[key]
            self._done_seqs.add(seq)
            self._alone.discard(seq)
        self._oldest_open()  # drop what is done from the heap: it never grows with uptime
        if written:
            self.written += len(batch)
        if self._log is not None:
            self._log.done(seq for _, seq, _ in batch)
            self._maybe_rotate_log()
        self._changed(-len(batch))
        self._progress.set()

    def _oldest_open(self) -> float:
        """The smallest seq not yet done (infinity when none)."""
        while self._open_seqs and self._open_seqs[0] in self._done_seqs:
            self._done_seqs.discard(heapq.heappop(self._open_seqs))
        return self._open_seqs[0] if self._open_seqs else float("inf")

    def _maybe_rotate_log(self) -> None:
        assert self._log is not None
        size = self._log.size
        if (size < _LOG_ROTATE_BYTES or self._pending > _LOG_ROTATE_MAX_PENDING
                or size < 4 * _LINE_BYTES * self._pending):
            return
        try:
            self._log.rotate(self._pending_lines())
        except OSError as exc:
            log.error("writer: cannot rewrite %s: %r", self._log.path, exc)

    def _pending_lines(self) -> list[bytes]:
        """Every write not yet done, in submission order."""
        return [line for _, line in sorted(p for q in self._queues.values() for p in q)]

    def _changed(self, by: int) -> None:
        self._pending += by
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("writer: on_change hook failed")

    # ---- the journal ----------------------------------------------------------------

    def _resubmit(self, path: Path) -> int:
        count = 0
        for entry in _unfinished(path):
            try:
                self.submit(entry["key"], entry["method"], *_decode(entry["args"]),
                            **_decode(entry["kwargs"]))
                count += 1
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.error("writer journal %s entry unusable (%s): %r", path, exc,
                          str(entry)[:200])
        return count

    def _append_journal(self, lines: list[bytes]) -> None:
        if self.journal is None:
            log.error("writer: no journal, %d writes lost: %s", len(lines),
                      [_call_of(line)[:2] for line in lines])
            return
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with self.journal.open("ab") as out:
            out.write(b"".join(lines))
            out.flush()
            os.fsync(out.fileno())
        log.warning("writer: %d pending writes journaled to %s", len(lines), self.journal)
