"""Simulated hotline calls through the sandboxed Asterisk, over plain ARI REST.

A call is a Local channel ``Local/<number>@hotline/n`` originated with its
``;1`` half in the dialplan context ``sim-callers`` (the simulated caller) while
the ``;2`` half runs ``hotline`` as the caller's channel seen by the PBX. The
caller's phone number is the originate caller ID; the Local channel driver
copies it and the ``SIM_*`` variables onto ``;2``. See
docker/asterisk/extensions.conf for what each half does.

Audio paths are host paths under the shared folder, which the sandbox mounts at
``/srv/shared`` inside its root.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from callcenter.constants import (
    CONTEXT_HOTLINE,
    CONTEXT_TEST_CALLERS,
    VAR_SIM_AGENT_AUDIO,
    VAR_SIM_CALLER_AUDIO,
    VAR_SIM_CALLER_DIGITS,
    VAR_SIM_CALLER_SPEECH,
    VAR_SIM_MENU_WAIT,
    VAR_SIM_SPEAK_AT,
    VAR_SIM_SURVEY_KEY,
)

SHARED_MOUNT_POINT = "/srv/shared"
DEFAULT_SHARED_DIR = Path(__file__).resolve().parents[3] / "shared"


@dataclass(frozen=True)
class AriParams:
    """Where ARI answers and with which user."""

    url: str = "http://127.0.0.1:8088"
    user: str = "callcenter"
    password: str = "callcenter"


@dataclass(frozen=True)
class ScenarioAudio:
    """The two legs of a shared test scenario and its meta.json."""

    caller: Path
    agent: Path
    meta: dict[str, Any]


def scenario_audio(shared_dir: Path, scenario_id: str) -> ScenarioAudio:
    """Audio and meta of ``scenarios/dev/<id>`` (or ``scenarios/<set>/<id>``)."""
    relative = scenario_id if "/" in scenario_id else f"dev/{scenario_id}"
    folder = Path(shared_dir) / "scenarios" / relative
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    return ScenarioAudio(caller=folder / "caller.wav", agent=folder / "agent.wav", meta=meta)


# The dev scenarios name the main-menu key only ("1" repair). Repair has a
# sub-menu: 2 = other repairs, then "#" skips the problem description.
SCENARIO_KEYS = {"1": "12#"}


def menu_keys(main_key: str, *, pause: str = "") -> str:
    """The keys a scenario's caller presses, ``pause`` between them ("ww": 1 s in
    SendDTMF, so each key lands while the next prompt plays)."""
    return pause.join(SCENARIO_KEYS.get(main_key, main_key))


def in_root_sound(path: Path | None, shared_dir: Path = DEFAULT_SHARED_DIR) -> str:
    """The Playback() name of a shared WAV inside the sandbox: no ``.wav`` suffix."""
    if path is None:
        return ""
    relative = Path(path).resolve().relative_to(Path(shared_dir).resolve())
    name = f"{SHARED_MOUNT_POINT}/{relative.as_posix()}"
    return name.removesuffix(".wav")


def pbx_channel_id(sim_channel_id: str) -> str:
    """Id of the ``;2`` half (the PBX-side caller channel) of a simulated call."""
    return f"{sim_channel_id}-pbx"


def originate_params(
    *,
    number: str,
    caller_phone: str,
    channel_id: str,
    context: str = CONTEXT_HOTLINE,
    timeout_s: int = 60,
) -> dict[str, str]:
    """Query parameters of ``POST /ari/channels`` for a simulated caller."""
    return {
        "endpoint": f"Local/{number}@{context}/n",
        "context": CONTEXT_TEST_CALLERS,
        "extension": "s",
        "priority": "1",
        "callerId": caller_phone,
        "timeout": str(timeout_s),
        "channelId": channel_id,
        "otherChannelId": pbx_channel_id(channel_id),
    }


def caller_variables(
    *,
    caller_audio: Path | None,
    digits: str,
    agent_audio: Path | None,
    menu_wait_s: float,
    shared_dir: Path,
    speech: Path | None = None,
    survey_key: str = "",
    speak_at: str = "",
) -> dict[str, str]:
    return {
        VAR_SIM_SURVEY_KEY: survey_key,
        VAR_SIM_SPEAK_AT: speak_at,
        VAR_SIM_CALLER_AUDIO: in_root_sound(caller_audio, shared_dir),
        VAR_SIM_CALLER_DIGITS: digits,
        VAR_SIM_CALLER_SPEECH: in_root_sound(speech, shared_dir),
        VAR_SIM_MENU_WAIT: f"{menu_wait_s:g}",
        VAR_SIM_AGENT_AUDIO: in_root_sound(agent_audio, shared_dir),
    }


async def place_call(
    ari: AriParams | aiohttp.ClientSession,
    *,
    number: str,
    caller_phone: str,
    caller_audio: Path | None,
    digits: str,
    agent_audio: Path | None,
    menu_wait_s: float = 2.0,
    shared_dir: Path = DEFAULT_SHARED_DIR,
    context: str = CONTEXT_HOTLINE,
    ari_url: str = AriParams.url,
    speech: Path | None = None,
    survey_key: str = "",
    speak_at: str = "",
) -> str:
    """Originate a simulated caller; return its (``;1``) channel id.

    ``digits`` are keyed ``menu_wait_s`` after the answer (``w`` = a 0.5 s pause,
    as SendDTMF reads it); ``speech`` (a WAV under the shared folder) is said
    once the IVR listens (at the node ``speak_at``, any node by default);
    ``survey_key`` is keyed when the survey asks.

    ``ari`` is either the ARI address and user, or an aiohttp session (no
    ``base_url``) that sends the ARI basic-auth header, with ``ari_url`` the
    server. The PBX-side channel's id is ``pbx_channel_id(returned id)``.
    ``context`` is the dialplan the ``;2`` half runs (the hotline by default).
    """
    channel_id = f"sim-{uuid.uuid4().hex[:16]}"
    params = originate_params(
        number=number, caller_phone=caller_phone, channel_id=channel_id, context=context
    )
    body = {
        "variables": caller_variables(
            caller_audio=caller_audio,
            digits=digits,
            agent_audio=agent_audio,
            menu_wait_s=menu_wait_s,
            shared_dir=shared_dir,
            speech=speech,
            survey_key=survey_key,
            speak_at=speak_at,
        )
    }
    if isinstance(ari, aiohttp.ClientSession):
        return await _originate(ari, f"{ari_url.rstrip('/')}/ari/channels", params, body)
    headers = {"Authorization": aiohttp.encode_basic_auth(ari.user, ari.password)}
    async with aiohttp.ClientSession(headers=headers) as session:
        return await _originate(session, f"{ari.url.rstrip('/')}/ari/channels", params, body)


async def _originate(
    session: aiohttp.ClientSession, url: str, params: dict[str, str], body: dict[str, Any]
) -> str:
    async with session.post(url, params=params, json=body) as response:
        if response.status >= 300:
            text = await response.text()
            raise RuntimeError(f"ARI originate failed: {response.status} {text}")
        channel = await response.json()
    return str(channel["id"])
