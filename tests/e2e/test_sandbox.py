"""The sandboxed Asterisk, its dialplan contract and the call simulator.

No call-centre service runs here: the tests stand in for the IVR (the
``sim-selftest`` context) and for the routing app (a throwaway ARI websocket
registered as the Stasis app ``hotline``).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from callcenter.constants import (
    CONTEXT_HOTLINE,
    CONTEXT_SAFE_FALLBACK,
    CONTEXT_TEST_AGENTS,
    CONTEXT_TEST_CALLERS,
    STASIS_APP,
    VAR_CALL_ID,
    VAR_QUEUE,
)
from callcenter.sandbox.asterisk import IN_ROOT_SOUNDS, AsteriskSandbox
from callcenter.sandbox.simulator import (
    AriParams,
    in_root_sound,
    menu_keys,
    pbx_channel_id,
    place_call,
)
from tests.e2e.conftest import eventually

# Repair, then "other repairs", then "#" skips the description; SendDTMF pauses.
REPAIR_KEYS = menu_keys("1", pause="ww")

pytestmark = pytest.mark.e2e

CALLER_WAV = "scenarios/ivr/ivr04.wav"  # 3.4 s
AGENT_WAV = "scenarios/ivr/ivr01.wav"  # 1.8 s
PHONE = "13917624058"


def wav_stats(path: Path) -> tuple[float, int, float]:
    """Duration (s), sample rate and RMS of a 16-bit mono WAV."""
    with wave.open(str(path)) as wav:
        frames = wav.readframes(wav.getnframes())
        rate = wav.getframerate()
        samples = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    rms = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
    return samples.size / rate, rate, rms


@pytest.fixture
async def ari(asterisk_sandbox: AsteriskSandbox) -> AsyncIterator[aiohttp.ClientSession]:
    auth = aiohttp.encode_basic_auth(asterisk_sandbox.ari_user, asterisk_sandbox.ari_password)
    async with aiohttp.ClientSession(headers={"Authorization": auth}) as session:
        yield session


def ari_params(sandbox: AsteriskSandbox) -> AriParams:
    return AriParams(sandbox.ari_url, sandbox.ari_user, sandbox.ari_password)


async def ari_json(session: aiohttp.ClientSession, method: str, url: str, **params: str) -> Any:
    async with session.request(method, url, params=params) as response:
        assert response.status < 300, f"{method} {url}: {response.status} {await response.text()}"
        return await response.json() if response.status != 204 else None


def test_ari_answers(asterisk_sandbox: AsteriskSandbox) -> None:
    info = asterisk_sandbox.ari_info()
    assert info is not None
    assert info["system"]["version"].startswith("22.")
    assert "Asterisk 22." in asterisk_sandbox.cli("core show version")


def test_dialplan_and_prompts_installed(asterisk_sandbox: AsteriskSandbox) -> None:
    contexts = (CONTEXT_HOTLINE, CONTEXT_SAFE_FALLBACK, CONTEXT_TEST_CALLERS, CONTEXT_TEST_AGENTS)
    for context in (*contexts, "sim-selftest"):
        assert f"'{context}'" in asterisk_sandbox.cli(f"dialplan show {context}")
    assert "app_stasis.so" in asterisk_sandbox.cli("module show like app_stasis")
    sounds = asterisk_sandbox.root / IN_ROOT_SOUNDS
    # The IVR's (menu.yaml) and the dialplan's and queues' (prompts.yaml) prompts.
    for name in ("welcome", "main", "invalid", "silent_hello", "sorry", "goodbye", "queue_wait"):
        duration, rate, rms = wav_stats(sounds / f"{name}.wav")
        assert rate == 8000 and duration > 1.0 and rms > 100, name


async def test_simulated_caller_plays_wav_and_sends_dtmf(
    asterisk_sandbox: AsteriskSandbox, ari: aiohttp.ClientSession
) -> None:
    shared = asterisk_sandbox.shared_dir
    exten = str(random.randint(1000, 9999))
    sim_id = await place_call(
        ari_params(asterisk_sandbox),
        number=exten,
        caller_phone=PHONE,
        caller_audio=shared / CALLER_WAV,
        digits="3",
        agent_audio=shared / AGENT_WAV,
        menu_wait_s=0.5,
        shared_dir=shared,
        context="sim-selftest",
    )
    channels = f"{asterisk_sandbox.ari_url}/ari/channels"

    async def playing() -> bool:
        listed = await ari_json(ari, "GET", channels)
        plan = next((c["dialplan"] for c in listed if c["id"] == sim_id), {})
        return plan.get("app_name") == "Playback" and "/srv/shared/" in plan.get("app_data", "")

    await eventually(playing, 15, "the simulated caller to play its WAV")

    async def gone() -> bool:
        async with ari.get(f"{channels}/{sim_id}") as response:
            return response.status == 404

    await eventually(gone, 15, "the simulated caller to hang up")
    variables = f"{asterisk_sandbox.ari_url}/ari/asterisk/variable"
    seen = {}
    for name in ("DIGITS", "CALLERID", "AGENT_AUDIO"):
        reply = await ari_json(ari, "GET", variables, variable=f"SELFTEST_{exten}_{name}")
        seen[name] = reply["value"]
    assert seen == {
        "DIGITS": "3",
        "CALLERID": PHONE,
        "AGENT_AUDIO": in_root_sound(shared / AGENT_WAV, shared),
    }
    recorded = asterisk_sandbox.recordings_dir / "selftest" / f"{exten}.wav"
    duration, rate, rms = wav_stats(recorded)
    expected, _, _ = wav_stats(shared / CALLER_WAV)
    assert rate == 8000 and rms > 100
    assert abs(duration - expected) < 0.5, (duration, expected)


class AriEvents:
    """A throwaway websocket registered as the Stasis app, standing in for routing.

    Events that no wait matched are kept, so the order of arrival does not matter.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.backlog: list[dict[str, Any]] = []

    async def wait(
        self, predicate: Callable[[dict[str, Any]], bool], within_s: float = 30
    ) -> dict[str, Any]:
        for event in self.backlog:
            if predicate(event):
                self.backlog.remove(event)
                return event
        deadline = time.monotonic() + within_s
        while True:
            message = await self.ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            if message.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"ARI websocket closed: {message}")
            event = json.loads(message.data)
            if predicate(event):
                return event
            self.backlog.append(event)


def stasis_start(channel_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == channel_id


async def test_fallback_agent_bridge_and_snoop_recording(
    asterisk_sandbox: AsteriskSandbox, ari: aiohttp.ClientSession
) -> None:
    """hotline-fallback -> Stasis, a simulated agent, snoop recordings <call_id>/<leg>."""
    base = f"{asterisk_sandbox.ari_url}/ari"
    ws_url = base.replace("http", "ws", 1) + f"/events?app={STASIS_APP}"
    shared = asterisk_sandbox.shared_dir
    async with ari.ws_connect(ws_url) as ws:
        # The app keeps the event filter the service set (callcenter/acd/stasis.py):
        # this stand-in wants every event, recordings' included.
        async with ari.put(f"{base}/applications/{STASIS_APP}/eventFilter",
                           json={"allowed": [], "disallowed": []}) as response:
            assert response.status == 200, await response.text()
        events = AriEvents(ws)
        sim_id = await place_call(
            ari, number="s", caller_phone=PHONE, caller_audio=shared / CALLER_WAV, digits="",
            agent_audio=shared / AGENT_WAV, shared_dir=shared, context=CONTEXT_SAFE_FALLBACK,
            ari_url=asterisk_sandbox.ari_url,
        )  # fmt: skip
        caller = pbx_channel_id(sim_id)
        started = await events.wait(stasis_start(caller))
        # No IVR ran: no call id yet (the ACD derives one from the channel), general, 0.
        assert started["args"] == ["fallback", "", "general", "0"]
        queue = await ari_json(ari, "GET", f"{base}/channels/{caller}/variable", variable=VAR_QUEUE)
        assert queue["value"] == "general"

        call_id = uuid.uuid4().hex[:12]
        agent = f"agent-{call_id}"
        originate = {
            "endpoint": f"Local/1001@{CONTEXT_TEST_AGENTS}/n", "app": STASIS_APP,
            "appArgs": "agent", "channelId": agent, "timeout": "20",
        }  # fmt: skip
        variables = {VAR_CALL_ID: call_id, "CC_CALLER_CHANNEL": started["channel"]["name"]}
        async with ari.post(f"{base}/channels", params=originate, json={"variables": variables}):
            pass
        await events.wait(stasis_start(agent))
        bridge = await ari_json(ari, "POST", f"{base}/bridges", type="mixing")
        await ari_json(
            ari, "POST", f"{base}/bridges/{bridge['id']}/addChannel", channel=f"{caller},{agent}"
        )
        for leg, channel in (("caller", caller), ("agent", agent)):
            snoop = f"snoop-{leg}-{call_id}"
            await ari_json(
                ari, "POST", f"{base}/channels/{channel}/snoop",
                spy="in", app=STASIS_APP, snoopId=snoop,
            )  # fmt: skip
            # Recording a snoop channel before its StasisStart answers 409.
            await events.wait(stasis_start(snoop))
            await ari_json(
                ari, "POST", f"{base}/channels/{snoop}/record",
                name=f"{call_id}/{leg}", format="wav", ifExists="overwrite",
            )  # fmt: skip
        for channel in (caller, agent):
            await ari_json(
                ari, "POST", f"{base}/channels/{channel}/variable",
                variable="CC_BRIDGED", value="1",
            )  # fmt: skip
        # The caller hangs up when its audio ends; then routing hangs up the agent.
        await events.wait(lambda e: e["type"] == "StasisEnd" and e["channel"]["id"] == caller)
        await ari_json(ari, "DELETE", f"{base}/channels/{agent}")
        # A WAV is complete (header written) only at its RecordingFinished.
        unfinished = {f"{call_id}/caller", f"{call_id}/agent"}
        while unfinished:
            event = await events.wait(lambda e: e["type"] == "RecordingFinished")
            unfinished.discard(event["recording"]["name"])
        await ari_json(ari, "DELETE", f"{base}/bridges/{bridge['id']}")

    folder = asterisk_sandbox.recordings_dir / call_id
    caller_s, _, caller_rms = wav_stats(folder / "caller.wav")
    agent_s, _, agent_rms = wav_stats(folder / "agent.wav")
    expected_caller, _, _ = wav_stats(shared / CALLER_WAV)
    expected_agent, _, _ = wav_stats(shared / AGENT_WAV)
    assert abs(caller_s - expected_caller) < 0.5 and caller_rms > 100
    assert agent_s > expected_agent - 0.3 and agent_rms > 100


async def test_agent_9999_never_answers(
    asterisk_sandbox: AsteriskSandbox, ari: aiohttp.ClientSession
) -> None:
    base = f"{asterisk_sandbox.ari_url}/ari"
    agent = f"agent-{uuid.uuid4().hex[:12]}"
    params = {
        "endpoint": f"Local/9999@{CONTEXT_TEST_AGENTS}/n", "app": STASIS_APP,
        "channelId": agent, "timeout": "30",
    }  # fmt: skip
    await ari_json(ari, "POST", f"{base}/channels", **params)
    await asyncio.sleep(2)
    channel = await ari_json(ari, "GET", f"{base}/channels/{agent}")
    assert channel["state"] == "Ringing"
    await ari_json(ari, "DELETE", f"{base}/channels/{agent}")


async def test_hotline_without_ivr_service_is_never_silent(
    asterisk_sandbox: AsteriskSandbox, ari: aiohttp.ClientSession
) -> None:
    """AGI unreachable and no Stasis app: sorry, sorry again, goodbye, hang up."""
    base = f"{asterisk_sandbox.ari_url}/ari"
    variable = f"{base}/asterisk/variable"
    port = (await ari_json(ari, "GET", variable, variable="CC_AGI_PORT"))["value"]
    await ari_json(ari, "POST", variable, variable="CC_AGI_PORT", value="1")  # refused
    try:
        sim_id = await place_call(
            ari, number="4008001234", caller_phone=PHONE, caller_audio=None, digits=REPAIR_KEYS,
            agent_audio=None, ari_url=asterisk_sandbox.ari_url,
        )  # fmt: skip
        caller = pbx_channel_id(sim_id)
        seen: set[tuple[str, str, str]] = set()

        async def hung_up() -> bool:
            async with ari.get(f"{base}/channels/{caller}") as response:
                if response.status == 404:
                    return True
                plan = (await response.json())["dialplan"]
                seen.add((plan["context"], plan["app_name"], plan["app_data"]))
                return False

        await eventually(hung_up, 40, "the fallback to hang up")
    finally:
        await ari_json(ari, "POST", variable, variable="CC_AGI_PORT", value=port)
    assert (CONTEXT_SAFE_FALLBACK, "Playback", "callcenter/sorry") in seen
    assert (CONTEXT_SAFE_FALLBACK, "Playback", "callcenter/goodbye") in seen
