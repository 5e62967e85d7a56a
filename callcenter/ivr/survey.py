"""The satisfaction survey after the call: AGI script ``survey``.

The agent sends the caller here from the console (routing continues the
caller's channel in the dialplan context ``hotline-survey``). The caller hears
the question and presses 1-5; the answer is stored on the call and its
tickets through the writer (never awaited: the caller is not kept waiting on
the database). Two tries, then a polite goodbye without an answer.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from callcenter.agi.channel import AgiChannel
from callcenter.constants import VAR_CALL_ID, VAR_IVR_LISTENING, VAR_SURVEY_SCORE
from callcenter.db.writer import OrderedWriter
from callcenter.ivr.handler import SOUNDS, CallSink, IvrHandler

log = structlog.get_logger(__name__)

SCORES = "12345"
TRIES = 2
WAIT_MS = 6000


def score_of(key: str) -> int | None:
    """A pressed key as a satisfaction score, or None for anything else."""
    return int(key) if len(key) == 1 and key in SCORES else None


def make_survey_handler(sink: CallSink, *, writer: OrderedWriter | None = None) -> IvrHandler:
    writes = writer if writer is not None else OrderedWriter(sink)

    async def handle_survey(channel: AgiChannel) -> None:
        call_id = await channel.get_variable(VAR_CALL_ID) or ""
        await channel.set_variable(VAR_IVR_LISTENING, "survey")
        score = await _ask(channel)
        if score is not None and call_id:
            writes.submit(call_id, "save_survey", call_id, score, at=datetime.now(UTC))
            await channel.set_variable(VAR_SURVEY_SCORE, score)
        log.info("survey.answered", call_id=call_id, score=score)
        await channel.stream_file(SOUNDS + "survey_thanks", "")
        await channel.hangup()

    return handle_survey


async def _ask(channel: AgiChannel) -> int | None:
    for _ in range(TRIES):
        key = await channel.stream_file(SOUNDS + "survey", SCORES)
        if not key:
            key = await channel.wait_for_digit(WAIT_MS)
        score = score_of(key)
        if score is not None:
            return score
    return None
