"""An ordered write-behind in front of the store, for the telephony side.

A call must never wait on the database, and a database outage must never lose
a write. ``OrderedWriter.submit(key, method, *args, **kwargs)`` returns at once;
in the background the writer calls ``getattr(store, method)(*args, **kwargs)``:

- writes with the same key (a call id, ``agent:<id>``) run strictly in
  submission order, one at a time; different keys run side by side, at most
  ``concurrency`` store calls at once;
- a transient error (:func:`callcenter.db.store.is_transient`: the database is
  away or restarting) retries that key's head write with capped exponential
  back-off until it succeeds; the key's later writes wait behind it. A store
  method's own retries (``store.retrying``) happen inside one attempt, so
  nothing overlaps and nothing is reordered;
- any other error is a real one: it is logged with the key and method, that
  write is dropped and the key goes on;
- ``close()`` waits a while, then appends what is still pending to the journal
  (JSON lines, datetimes tagged) and ``start()`` of the next run replays it in
  order. A write cut off in flight is journaled too: store writes are
  idempotent, so one that did commit is harmless to repeat.

Writes pending in memory are lost if the process is killed (SIGKILL) while the
database is away: the journal covers an orderly stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from callcenter.db.store import is_transient

log = logging.getLogger("callcenter.db.writer")

_DATETIME_TAG = "$datetime"


@dataclass(slots=True)
class _Write:
    seq: int
    key: str
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "method": self.method,
            "args": [_encode(a) for a in self.args],
            "kwargs": {k: _encode(v) for k, v in self.kwargs.items()},
        }


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {_DATETIME_TAG: value.isoformat()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_DATETIME_TAG}:
            return datetime.fromisoformat(value[_DATETIME_TAG])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


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
        concurrency: int = 8,
    ) -> None:
        self.store = store
        self.journal = journal
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.on_change: Callable[[], None] | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._queues: dict[str, deque[_Write]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._seq = 0
        self._pending = 0
        self._progress = asyncio.Condition()
        self._closed = False
        # Counters, for metrics and tests.
        self.written = 0
        self.dropped = 0
        self.retries = 0

    # ---- API ------------------------------------------------------------------------

    def submit(self, key: str, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Queue ``store.<method>(*args, **kwargs)`` behind the key's earlier writes.

        Never blocks and never raises for database trouble; raises
        ``AttributeError`` for a method the store does not have and ``TypeError``
        for arguments the journal could not hold (programming errors)."""
        if not callable(getattr(self.store, method, None)):
            raise AttributeError(f"store has no method {method!r}")
        self._seq += 1
        write = _Write(self._seq, key, method, args, kwargs)
        json.dumps(write.to_json())  # fail now, not at close, on what cannot be journaled
        if self._closed:
            log.error("writer closed: journaling %s %s for %s", method, args, key)
            self._append_journal([write])
            return
        self._queues.setdefault(key, deque()).append(write)
        self._changed(+1)
        if key not in self._tasks:
            self._tasks[key] = asyncio.get_running_loop().create_task(
                self._drain(key), name=f"writer:{key}"
            )

    async def start(self) -> None:
        """Replay (submit again, in order) the writes a previous run journaled."""
        if self.journal is None or not self.journal.exists():
            return
        replaying = self.journal.with_name(self.journal.name + ".replaying")
        os.replace(self.journal, replaying)
        count = 0
        for number, line in enumerate(replaying.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                self.submit(
                    entry["key"], entry["method"], *_decode(entry["args"]),
                    **_decode(entry["kwargs"]),
                )
                count += 1
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.error("writer journal %s line %d unusable (%s): %r",
                          self.journal, number, exc, line[:200])
        replaying.unlink()
        log.info("writer: replaying %d journaled writes", count)

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every write submitted so far is done (written, or dropped as
        a real error). False if ``timeout_s`` passed first."""
        target = self._seq

        def done() -> bool:
            return all(q[0].seq > target for q in self._queues.values() if q)

        try:
            async with asyncio.timeout(timeout_s), self._progress:
                await self._progress.wait_for(done)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout_s: float = 10.0) -> None:
        """Flush for up to ``timeout_s``, then stop and journal what is still pending."""
        if not await self.flush(timeout_s):
            log.warning("writer: %d writes still pending after %.0f s", self._pending, timeout_s)
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        left = sorted((w for q in self._queues.values() for w in q), key=lambda w: w.seq)
        self._queues.clear()
        self._tasks.clear()
        if left:
            self._append_journal(left)
            self._changed(-len(left))

    def pending(self) -> int:
        """Writes submitted and not yet done (including those being retried)."""
        return self._pending

    # ---- inside -------------------------------------------------------------------

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                await self._write(queue[0])
                queue.popleft()
                self._changed(-1)
                async with self._progress:
                    self._progress.notify_all()
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]
            if not queue and self._queues.get(key) is queue:
                del self._queues[key]

    async def _write(self, write: _Write) -> None:
        delay = self.first_delay_s
        attempt = 0
        while True:
            attempt += 1
            async with self._slots:
                try:
                    await getattr(self.store, write.method)(*write.args, **write.kwargs)
                except Exception as exc:
                    error: Exception | None = exc
                else:
                    error = None
            if error is None:
                self.written += 1
                if attempt > 1:
                    log.info("writer: %s for %s written after %d attempts",
                             write.method, write.key, attempt)
                return
            if not is_transient(error):
                self.dropped += 1
                log.error("writer: %s for %s failed, write dropped: %r",
                          write.method, write.key, error, exc_info=error)
                return
            self.retries += 1
            log.warning("writer: %s for %s failed (%r); retry %d in %.2f s",
                        write.method, write.key, error, attempt, delay)
            await asyncio.sleep(delay)  # the slot is free while waiting
            delay = min(delay * 2, self.max_delay_s)

    def _changed(self, by: int) -> None:
        self._pending += by
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("writer: on_change hook failed")

    def _append_journal(self, writes: list[_Write]) -> None:
        if self.journal is None:
            log.error("writer: no journal, %d writes lost: %s", len(writes),
                      [(w.key, w.method) for w in writes])
            return
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with self.journal.open("a", encoding="utf-8") as out:
            for write in writes:
                out.write(json.dumps(write.to_json(), ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
        log.warning("writer: %d pending writes journaled to %s", len(writes), self.journal)
