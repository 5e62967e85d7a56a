"""The IVR through the real sandboxed Asterisk and the real service: callers as
Local channels (the simulator: DTMF by SendDTMF, speech by Playback) and as real
SIP calls (SIPp: RFC 4733 DTMF, G.711 RTP speech).

Nobody is logged in as an agent: what is checked is where the IVR sent each
call (the call row the IVR writes: queue, priority, keys, choice, node, end
reason) and what it recorded per node, not the conversation after it. Calls
run side by side so the whole module costs about as long as its slowest call.
"""

from __future__ import annotations

import asyncio
import csv
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml
from aiohttp import web

from callcenter import residents
from callcenter.db.store import PgStore
from callcenter.ivr.menu import MENU_PATH
from callcenter.sandbox.asterisk import IN_ROOT_SOUNDS, AsteriskSandbox
from callcenter.sandbox.simulator import AriParams, pbx_channel_id, place_call
from callcenter.sandbox.sipp import SippLab
from callcenter.settings import Settings
from callcenter.web.app import LIVE, POOL
from tests.e2e.conftest import eventually, running_service

pytestmark = [pytest.mark.e2e, pytest.mark.asr]

SAFETY, VIP = 2, 1
HOTLINE_NUMBER = "4008001234"


@pytest.fixture
def settings(sandbox_settings: Callable[..., Settings]) -> Settings:
    return sandbox_settings()


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[web.Application]:
    async with running_service(settings, workers=0) as app:
        yield app


async def _call(number: str, caller: str, *, digits: str = "", speech: Path | None = None,
                shared_dir: Path, wait_s: float = 1.0, speak_at: str = "") -> str:
    """A Local-channel caller; returns the PBX-side channel id (the call row's)."""
    sim = await place_call(AriParams(), number=number, caller_phone=caller, caller_audio=None,
                           digits=digits, agent_audio=None, menu_wait_s=wait_s,
                           shared_dir=shared_dir, speech=speech, speak_at=speak_at)
    return pbx_channel_id(sim)


async def _row(pool: asyncpg.Pool, channel: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM calls WHERE channel_id = $1", channel)


async def _routed(pool: asyncpg.Pool, channel: str, within_s: float = 60) -> asyncpg.Record:
    async def queued() -> asyncpg.Record | None:
        row = await _row(pool, channel)
        return row if row and row["queue"] and row["priority"] is not None else None

    return await eventually(queued, within_s, f"the IVR to route {channel}")


async def _ended(pool: asyncpg.Pool, channel: str, within_s: float = 90) -> asyncpg.Record:
    async def ended() -> asyncpg.Record | None:
        row = await _row(pool, channel)
        return row if row and row["status"] != "active" else None

    return await eventually(ended, within_s, f"{channel} to end")


async def _node_events(pool: asyncpg.Pool, call_id: str) -> list[tuple[str, str, str, str]]:
    rows = await pool.fetch(
        "SELECT node, kind, via, choice FROM ivr_events WHERE call_id = $1 ORDER BY id", call_id)
    return [(r["node"], r["kind"], r["via"], r["choice"]) for r in rows]


async def _hang_up(pbx_channel: str) -> None:
    sim = pbx_channel.removesuffix("-pbx")
    auth = {"Authorization": aiohttp.encode_basic_auth("callcenter", "callcenter")}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.delete(f"http://127.0.0.1:8088/ari/channels/{sim}") as resp:
            assert resp.status in (204, 404)


def _clips(shared_dir: Path) -> dict[str, Path]:
    """The first clip of each intent (labels.tsv: id and intent columns only)."""
    folder = shared_dir / "scenarios" / "ivr"
    first: dict[str, Path] = {}
    with open(folder / "labels.tsv", encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) >= 3 and row[0].startswith("ivr"):
                first.setdefault(row[2], folder / f"{row[0]}.wav")
    return first


async def test_callers_key_speak_or_stay_silent_and_each_reaches_the_right_place(
    service: web.Application, shared_dir: Path
) -> None:
    """Every main-menu path by keys, invalid keys, spoken choices, a known VIP and a
    silent caller, all at once (the silent line takes longest: about 40 s)."""
    pool = service[POOL]
    rows, problems = residents.parse_csv("phone,name,vip\n13912340000,王奶奶,独居老人\n")
    assert not problems
    await residents.upsert(pool, rows, by="test")
    directory = service[LIVE]["residents"]  # the IVR's copy follows the table (NOTIFY)

    async def known() -> bool:
        return (await directory.lookup("13912340000")).vip == "elderly"

    await eventually(known, 10, "the IVR to know the new VIP")
    keyed = {  # keys (w = 0.5 s) -> queue, priority, keys stored, choice
        "3": ("consultation", 0, "3", "consultation"),
        "0": ("general", 0, "0", "agent"),
        "2ww#": ("complaint", 0, "2", "complaint"),
        "1ww1": ("repair", SAFETY, "11", "emergency"),
        "1ww2ww#": ("repair", 0, "12", "repair"),
        "7ww7ww7": ("general", 0, "", "agent"),  # invalid keys: apologies, then a person
    }
    clips = _clips(shared_dir)
    spoken = {"consultation": "consultation", "agent": "general", "complaint": "complaint"}
    silent = await _call("12345", "13600000000", shared_dir=shared_dir)
    by_keys = {keys: await _call("12345", f"1380000000{i}", digits=keys, shared_dir=shared_dir)
               for i, keys in enumerate(keyed)}
    by_voice = {intent: await _call("12345", f"1370000000{i}", speech=clips[intent],
                                    shared_dir=shared_dir)
                for i, intent in enumerate(spoken)}
    vip = await _call("12345", "13912340000", digits="3", shared_dir=shared_dir)

    for keys, expected in keyed.items():
        row = await _routed(pool, by_keys[keys])
        assert (row["queue"], row["priority"], row["ivr_digits"], row["ivr_intent"]) == expected
    invalid = await _node_events(pool, (await _routed(pool, by_keys["7ww7ww7"]))["id"])
    assert [k for _, k, _, _ in invalid].count("invalid") == 3
    assert invalid[-1] == ("main", "transfer", "", "agent")
    assert (await _routed(pool, vip))["priority"] == VIP
    for intent, queue in spoken.items():
        row = await _routed(pool, by_voice[intent], within_s=90)
        assert (row["queue"], row["ivr_intent"], row["ivr_digits"]) == (queue, intent, "")
        assert ("main", "choice", "speech", intent) in await _node_events(pool, row["id"])

    row = await _ended(pool, silent, within_s=120)
    assert (row["end_reason"], row["ivr_node"], row["outcome"], row["queue"]) == (
        "silent_line", "silent", "ivr", None)
    assert [(n, k) for n, k, _, _ in await _node_events(pool, row["id"])] == [
        ("main", "entry"), ("main", "timeout"), ("silent", "entry"), ("silent", "timeout"),
        ("silent", "timeout"), ("silent", "timeout")]


async def test_a_hang_up_is_recorded_with_its_node(
    service: web.Application, shared_dir: Path
) -> None:
    """Every node of the open hotline (the after-hours test hangs up at "closed")."""
    pool = service[POOL]
    cases = [("", "main"), ("1", "repair"), ("1ww2", "describe"), ("", "silent")]

    async def hang_up_at(i: int, keys: str, node: str) -> None:
        channel = await _call("12345", f"1350000000{i}", digits=keys, shared_dir=shared_dir)
        await _hang_up_at(pool, channel, node)

    await asyncio.gather(*(hang_up_at(i, keys, node) for i, (keys, node) in enumerate(cases)))


async def _hang_up_at(pool: asyncpg.Pool, channel: str, node: str) -> None:
    """Hang the caller up once the IVR is at ``node``; the end is recorded there."""

    async def at_node() -> bool:
        row = await _row(pool, channel)
        return bool(row and row["ivr_node"] == node and row["stage"] == "menu")

    await eventually(at_node, 60, f"the caller to reach {node}")
    await _hang_up(channel)
    row = await _ended(pool, channel)
    assert (row["ivr_node"], row["hangup_by"], row["stage"]) == (node, "caller", "menu")
    assert (await _node_events(pool, row["id"]))[-1] == (node, "hangup", "", "")


async def test_the_agent_sends_the_caller_to_the_survey_and_the_rating_is_stored(
    service: web.Application, shared_dir: Path
) -> None:
    pool = service[POOL]
    store = PgStore(pool)
    await store.upsert_agent("agent1001", name="agent 1001",
                             endpoint="Local/1001@sim-agents/n", skills=["consultation"])
    await store.request_agent("agent1001", "login")
    sim = await place_call(AriParams(), number="12345", caller_phone="13400000000",
                           caller_audio=None, digits="3", agent_audio=None, menu_wait_s=1.0,
                           shared_dir=shared_dir, survey_key="4")
    channel = pbx_channel_id(sim)

    async def talking() -> bool:
        row = await _row(pool, channel)
        return bool(row and row["answered_at"])

    await eventually(talking, 60, "the agent to answer")
    await store.request_agent("agent1001", "survey")

    async def rated() -> asyncpg.Record | None:
        row = await _row(pool, channel)
        return row if row and row["survey_score"] else None

    row = await eventually(rated, 60, "the caller's rating")
    assert (row["survey_score"], row["outcome"]) == (4, "answered")
    assert row["hangup_by"] is None  # the agent ended it by the transfer, not a hang-up


async def test_after_hours_a_message_is_taken_and_an_emergency_reaches_the_on_call_engineer(
    settings: Settings, shared_dir: Path, tmp_path: Path
) -> None:
    """Repair and consultation closed (a menu file whose hours for them are empty).
    Key 3: the caller hears the closed message, speaks a message after the tone
    (silence ends it), is thanked and hung up; the call waits for a call-back.
    Another hangs up there: recorded at the node "closed".
    Keys 1-1: dialled to the on-call engineer (a simulated phone that answers),
    recorded from the answer, and the end is recorded when the caller hangs up."""
    menu = yaml.safe_load(MENU_PATH.read_text(encoding="utf-8"))
    menu["hours"]["repair"] = {"workday": [], "restday": []}
    menu["hours"]["consultation"] = {"workday": [], "restday": []}
    menu_file = tmp_path / "menu.yaml"
    menu_file.write_text(yaml.safe_dump(menu, allow_unicode=True), encoding="utf-8")
    closed = settings.model_copy(update={"ivr_menu_file": menu_file,
                                         "oncall_dial": "Local/7001@sim-agents/n"})
    async with running_service(closed, workers=0) as app:
        pool = app[POOL]
        message = await _call("12345", "13200000001", digits="3", shared_dir=shared_dir,
                              speech=_clips(shared_dir)["complaint"], speak_at="closed")
        channel = await _call("12345", "13200000000", digits="1ww1", shared_dir=shared_dir)
        gone = await _call("12345", "13200000002", digits="3", shared_dir=shared_dir)
        await _hang_up_at(pool, gone, "closed")
        left = await _ended(pool, message)
        assert (left["end_reason"], left["outcome"], left["ivr_node"], left["queue"]) == (
            "closed", "callback", "closed", None)
        assert (settings.recordings / left["ivr_description"]).is_file()
        assert ("closed", "entry", "", "") in await _node_events(pool, left["id"])

        async def oncall_answered() -> bool:
            return any(c["name"].startswith("Local/7001@sim-agents") and c["state"] == "Up"
                       for c in await _ari_channels())

        await eventually(oncall_answered, 60, "the on-call engineer to answer")
        row = await _row(pool, channel)
        assert row is not None and (row["queue"], row["priority"]) == ("repair", SAFETY)
        await _hang_up(channel)
        row = await _ended(pool, channel)
        assert (row["stage"], row["outcome"], row["ivr_intent"]) == (
            "conversation", "answered", "emergency")
        legs = await pool.fetch("SELECT path FROM recordings WHERE call_id = $1", row["id"])
        assert sorted(r["path"] for r in legs) == [f"{row['id']}/agent.wav",
                                                   f"{row['id']}/caller.wav"]
        assert (settings.recordings / row["id"] / "caller.wav").is_file()


async def _ari_channels() -> list[dict[str, Any]]:
    auth = {"Authorization": aiohttp.encode_basic_auth("callcenter", "callcenter")}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.get("http://127.0.0.1:8088/ari/channels") as resp:
            return list(await resp.json())


def _seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


async def test_real_sip_callers_key_and_speak_their_choice(
    service: web.Application, asterisk_sandbox: AsteriskSandbox, shared_dir: Path
) -> None:
    """SIPp on the loopback trunk: RFC 4733 keys for an emergency, and a spoken
    choice in the caller's G.711 audio once the menu prompt has ended."""
    pool = service[POOL]
    sounds = asterisk_sandbox.root / IN_ROOT_SOUNDS
    menu_ends = _seconds(sounds / "welcome.wav") + _seconds(sounds / "main.wav")
    clip = _clips(shared_dir)["consultation"]
    keyed = {  # RFC 4733 keys, 0.5 s apart -> queue, priority, keys stored
        "11": ("repair", SAFETY, "11"), "12#": ("repair", 0, "12"),
        "2#": ("complaint", 0, "2"), "3": ("consultation", 0, "3"), "0": ("general", 0, "0")}
    async with SippLab(asterisk_sandbox) as lab:
        runs = [await lab.call(HOTLINE_NUMBER, caller=f"1330000001{i}", digits=keys,
                               digits_at_s=2.0, hold_s=40, name=f"ivr-keys-{i}")
                for i, keys in enumerate(keyed)]
        runs.append(await lab.call(HOTLINE_NUMBER, caller="13300000002", audio=clip,
                                   digits_at_s=menu_ends + 1.0, hold_s=60, name="ivr-speech"))
        rows = await asyncio.gather(
            *(_routed_by_caller(pool, f"1330000001{i}") for i in range(len(keyed))),
            _routed_by_caller(pool, "13300000002", within_s=90))
        for run in runs:
            await run.stop()
    for row, expected in zip(rows, keyed.values(), strict=False):
        assert (row["queue"], row["priority"], row["ivr_digits"]) == expected
    assert (rows[-1]["queue"], rows[-1]["ivr_intent"], rows[-1]["ivr_digits"]) == (
        "consultation", "consultation", "")


async def _routed_by_caller(pool: asyncpg.Pool, caller: str, within_s: float = 60) -> Any:
    async def queued() -> asyncpg.Record | None:
        return await pool.fetchrow(
            "SELECT * FROM calls WHERE caller_number = $1 AND queue IS NOT NULL", caller)

    return await eventually(queued, within_s, f"the IVR to route {caller}")
