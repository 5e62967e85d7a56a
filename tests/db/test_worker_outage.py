"""A worker whose database is unreachable for 10 s, one call mid-analysis: once
the database is back, every call is analysed exactly once (one transcript, one
ticket, one "processed" event), the one that was mid-analysis included.

The worker reaches PostgreSQL through a relay on a Unix socket (``SocketGate``);
shutting the gate cuts every connection through it and refuses new ones, as a
network partition or a database host rebooting does. The test reads and writes
past the gate, directly."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import asyncpg
import numpy as np

from callcenter.core import Segment, Word
from callcenter.db.connect import create_pool
from callcenter.db.store import PgStore
from callcenter.pipeline import Transcribing
from callcenter.settings import Settings
from callcenter.worker import run_supervised
from tests.db.test_worker import ended_with_recordings, processed, until

OUTAGE_S = 10.0
RATE = 8000


class SocketGate:
    """A relay from a Unix socket of ours to PostgreSQL's that can be shut."""

    def __init__(self, target: Path, folder: Path) -> None:
        self.target = target
        self.folder = folder
        self.shut = False
        self._server: asyncio.AbstractServer | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.folder.mkdir()
        self._server = await asyncio.start_unix_server(
            self._relay, path=str(self.folder / self.target.name))

    async def close_for(self, seconds: float) -> None:
        """Cut every connection and refuse new ones for ``seconds``."""
        self.shut = True
        for writer in list(self._open):
            writer.transport.abort()
        await asyncio.sleep(seconds)  # the outage's length is what is tested
        self.shut = False

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.transport.abort()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.shut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(str(self.target))
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


def _via(dsn: str, folder: Path) -> tuple[str, Path]:
    """The DSN through the gate's folder, and PostgreSQL's socket."""
    parts = urlsplit(dsn)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    socket = Path(query["host"]) / f".s.PGSQL.{parts.port or 5432}"
    query["host"] = str(folder)
    return urlunsplit(parts._replace(query=urlencode(query))), socket


class HeldTranscribing(Transcribing):
    """Decodes nothing; holds the first leg it is given until released, so a call
    is mid-analysis when the database goes away."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent-model"))
        self.holding = threading.Event()
        self.release = threading.Event()

    def transcribe(self, samples: Any, rate: int, leg: str) -> list[Segment]:
        if not self.holding.is_set():
            self.holding.set()
            assert self.release.wait(60), "the test never released the decode"
        return [Segment(leg, 0.5, 1.5, "你好", [Word("你好", 0.5, 1.5)])]


async def _ended(store: PgStore, folder: Path, call_id: str) -> None:
    await ended_with_recordings(store, folder, call_id, np.zeros(RATE * 2, np.int16), RATE)


async def test_a_worker_rides_out_a_database_unreachable_for_10_s(
    db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    gated_dsn, socket = _via(db_dsn, tmp_path / "gate")
    gate = SocketGate(socket, tmp_path / "gate")
    await gate.start()
    pool = await create_pool(gated_dsn, max_size=3)
    settings = Settings(database_url=gated_dsn, data_dir=tmp_path, recordings_dir=tmp_path,
                        worker_heartbeat_s=2)
    held = HeldTranscribing()
    stopping = asyncio.Event()
    worker = asyncio.create_task(run_supervised(
        gated_dsn, PgStore(pool), settings, held, stopping, concurrency=1))
    direct = PgStore(db_pool)
    try:
        await _ended(direct, tmp_path, "mid")
        await until("the call mid-analysis", lambda: _holding(held))
        outage = asyncio.create_task(gate.close_for(OUTAGE_S))
        await asyncio.sleep(0)  # the gate is shut
        held.release.set()  # its results meet the outage
        await _ended(direct, tmp_path, "during")  # ended while the worker cannot see it
        await outage
        await _ended(direct, tmp_path, "after")
        for call_id in ("mid", "during", "after"):
            await until(f"{call_id} analysed", lambda c=call_id: processed(direct, c), 90)
    finally:
        stopping.set()
        held.release.set()
        await asyncio.wait_for(worker, 30)
        await pool.close()
        await gate.stop()
    for call_id in ("mid", "during", "after"):
        counts = await db_pool.fetchrow(
            "SELECT (SELECT count(*) FROM tickets WHERE call_id = $1) AS tickets,"
            " (SELECT count(*) FROM transcript_segments WHERE call_id = $1) AS segments,"
            " (SELECT count(*) FROM call_events WHERE call_id = $1 AND kind = 'processed')"
            " AS processed", call_id)
        assert dict(counts) == {"tickets": 1, "segments": 2, "processed": 1}, call_id


async def _holding(held: HeldTranscribing) -> bool:
    return held.holding.is_set()
