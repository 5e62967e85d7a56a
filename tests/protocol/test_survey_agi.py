"""The satisfaction survey AGI over a real socket: the rating lands on the call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from callcenter.agi.server import FastAgiServer
from callcenter.constants import VAR_CALL_ID, VAR_SURVEY_SCORE
from callcenter.ivr.handler import MemoryCallSink
from callcenter.ivr.survey import make_survey_handler, score_of
from tests.protocol.test_fastagi import FakeAsterisk, default_env, fast_writer


class SurveySink(MemoryCallSink):
    def __init__(self) -> None:
        super().__init__()
        self.surveys: list[tuple[str, int]] = []

    async def save_survey(self, call_id: str, score: int, at: datetime | None = None) -> None:
        self.surveys.append((call_id, score))


@pytest.fixture
async def rig() -> AsyncIterator[tuple[FastAgiServer, SurveySink, Any]]:
    sink = SurveySink()
    writer = fast_writer(sink)
    server = FastAgiServer("127.0.0.1", 0, {"survey": make_survey_handler(sink, writer=writer)},
                           header_timeout_s=0.5, command_timeout_s=2.0)
    await server.start()
    try:
        yield server, sink, writer
    finally:
        await server.stop(timeout_s=2.0)
        await writer.close(timeout_s=1.0)


async def _survey(rig: Any, plan: list[str]) -> FakeAsterisk:
    server, _, writer = rig
    peer = FakeAsterisk(plan=plan, variables={VAR_CALL_ID: "call-7"})
    await peer.call(server.port, default_env("survey"))
    assert await server.wait_idle(5)
    assert await writer.flush(5)
    return peer


async def test_a_key_during_the_question_is_the_rating(rig: Any) -> None:
    peer = await _survey(rig, ["4"])
    assert rig[1].surveys == [("call-7", 4)]
    assert peer.vars_set()[VAR_SURVEY_SCORE] == "4"
    played = [a[0] for n, a in peer.commands if n == "STREAM FILE"]
    assert played == ["callcenter/survey", "callcenter/survey_thanks"]
    assert peer.names()[-1] == "HANGUP"


async def test_wrong_keys_twice_end_politely_without_a_rating(rig: Any) -> None:
    peer = await _survey(rig, ["", "9", "", ""])  # question, wait: 9; question, wait: none
    assert rig[1].surveys == []
    assert VAR_SURVEY_SCORE not in peer.vars_set()
    assert peer.names()[-1] == "HANGUP"


def test_only_1_to_5_are_ratings() -> None:
    assert [score_of(k) for k in ("1", "5", "0", "6", "#", "")] == [1, 5, None, None, None, None]
