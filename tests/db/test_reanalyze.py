"""Calls analysed before personal numbers were masked: their recordings were never
checked (only managers may hear them) and their transcripts hold the numbers.
``callcenter calls reanalyze`` queues them again; the worker masks, mutes and
checks them, and nothing else is queued."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from callcenter import pii
from callcenter.core import Segment, Word
from callcenter.db.store import LegCheck, PgStore
from callcenter.pipeline import Transcribing
from callcenter.settings import Settings
from tests.db.test_worker import drain_queue, ended_with_recordings
from tests.unit.test_cli_analyze import _env

RATE = 8000
SAID = "我的手机是13800138000"


class SaysANumber(Transcribing):
    """Every caller leg says a mobile number (no model needed)."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent-model"))

    def transcribe(self, samples: Any, rate: int, leg: str) -> list[Segment]:
        if leg != "caller":
            return []
        words = [Word(ch, 0.2 + i * 0.1, 0.28 + i * 0.1) for i, ch in enumerate(SAID)]
        return [Segment("caller", words[0].start, words[-1].end, SAID, words)]

    def numbers(self, samples: Any, rate: int, leg: str, segments: list[Segment]
                ) -> list[Segment]:
        return []  # the number is legible in the first pass already

    def addresses(self, samples: Any, rate: int, leg: str, segments: list[Segment],
                  cues: Any, shift_s: float = 0.0) -> list[Segment]:
        return []


async def _old_call(store: PgStore, folder: Path, call_id: str, *, checked: bool) -> None:
    """A call as the analysis before masking left it (or, ``checked``, as now)."""
    tone = (3000 * np.sin(np.arange(RATE * 3) / 5)).astype(np.int16)
    await ended_with_recordings(store, folder, call_id, tone, RATE)
    await store.pool.execute("DELETE FROM pgqueuer")  # analysed back then
    await store.save_analysis(call_id, segments=[], ticket=None, qa=None, qa_source="asr",
                              legs_checked={"caller": LegCheck(0), "agent": LegCheck(0)}
                              if checked else None)
    await store.pool.execute(
        "INSERT INTO transcript_segments (call_id, leg, start_s, end_s, text, words)"
        " VALUES ($1, 'caller', 0.2, 2.0, $2, '[]')", call_id, SAID)  # stored unmasked


async def test_calls_never_checked_are_analysed_again_and_masked(
    db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    store = PgStore(db_pool)
    await _old_call(store, tmp_path, "old", checked=False)
    await _old_call(store, tmp_path, "new", checked=True)

    def reanalyze(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "callcenter", "calls", "reanalyze", "--since", "2020-01-01",
             *args], env=_env(tmp_path, db_dsn), capture_output=True, text=True, timeout=120)

    dry = reanalyze("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == '{"queued": 0, "calls": ["old"]}'
    assert await db_pool.fetchval("SELECT count(*) FROM pgqueuer") == 0
    queued = reanalyze()
    assert queued.returncode == 0, queued.stderr
    assert queued.stdout.strip() == '{"queued": 1, "calls": ["old"]}'

    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=tmp_path)
    await drain_queue(db_dsn, store, settings, SaysANumber())
    caller = await db_pool.fetchrow(
        "SELECT pii_findings, muted_path FROM recordings WHERE call_id = 'old' AND leg = 'caller'")
    assert (caller["pii_findings"], caller["muted_path"]) == (1, "old/caller.muted.wav")
    assert (tmp_path / "old" / "caller.muted.wav").is_file()
    texts = [r["text"] for r in await db_pool.fetch(
        "SELECT text FROM transcript_segments WHERE call_id = 'old'")]
    assert texts == [pii.mask_text(SAID)[0]]
    assert not await db_pool.fetchval(  # the checked call was left alone
        "SELECT count(*) FROM recordings WHERE call_id = 'new' AND muted_path IS NOT NULL")
    assert reanalyze().stdout.strip() == '{"queued": 0, "calls": []}'
