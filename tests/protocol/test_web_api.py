"""The web API and pages over real HTTP, on a real (embedded) PostgreSQL.

Data goes in through ``PgStore`` exactly as the worker writes it; the app is
the one ``callcenter serve --no-telephony`` runs, without workers.
"""

from __future__ import annotations

import asyncio
import json
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from callcenter.asr.muting import write_muted_copy
from callcenter.core import Evidence, QaResult, RuleResult, Segment, Ticket, Word
from callcenter.db.store import LegCheck, PgStore
from callcenter.ivr.engine import NodeEvent
from callcenter.ivr.stats import NodeCounts
from callcenter.keys import TICKETS
from callcenter.pii import Finding
from callcenter.settings import Settings
from callcenter.web.app import LIVE, POOL, create_app
from tests.web_support import Browser, add_user, browser, running, signed_in

CALL = "c0ffee0000000001"
OTHER = "c0ffee0000000002"  # a call without results
ESCAPING = "c0ffee0000000003"  # a recording row whose path leaves the folder
ABSOLUTE = "c0ffee0000000004"  # a recording row with an absolute path
LINKED = "c0ffee0000000005"  # a recording that is a symlink to a file outside
SECRET = b"RIFF-not-for-you"


@dataclass
class Web:
    client: Browser  # signed in as a supervisor
    rec_dir: Path
    ticket_number: str
    agent_wav: bytes
    server: TestServer


def _wav_bytes(path: Path, seconds: float = 1.0, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (3000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(samples.tobytes())
    return path.read_bytes()


def _segment(leg: Any, start: float, text: str) -> Segment:
    step = 0.25
    words = [Word(ch, start + i * step, start + (i + 1) * step, 0.9) for i, ch in enumerate(text)]
    return Segment(leg=leg, start=start, end=start + step * len(text), text=text, words=words)


async def _seed(store: PgStore, rec_dir: Path, outside: Path) -> tuple[str, bytes]:
    await store.open_call(CALL, caller_number="18761450923", channel_id="1.1")
    await store.update_call(CALL, stage="conversation", ivr_digits="1", queue="repair")
    await store.add_leg(CALL, "caller", channel_id="1.1", recording_name=f"{CALL}/caller.wav")
    await store.add_leg(CALL, "agent", channel_id="1.2", recording_name=f"{CALL}/agent.wav")
    _wav_bytes(rec_dir / CALL / "caller.wav")
    agent_wav = _wav_bytes(rec_dir / CALL / "agent.wav")
    assert await store.finish_call(CALL, stage="conversation", hangup_by="caller")
    segments = [
        _segment("agent", 0.5, "您好我姓许请问有什么可以帮助您"),
        _segment("caller", 6.6, "我家马桶堵了"),
        _segment("agent", 9.0, "好的再见"),
    ]
    ticket = Ticket(
        category="engineering",
        urgency="P2",
        description="马桶堵了 <b>urgent</b>",
        caller_name="林先生",
        phone="18761450923",
        building="15",
        unit="2",
        room="604",
        deadline=datetime.now(UTC) + timedelta(hours=4),
    )
    qa = QaResult(
        score=82.5,
        rules=[
            RuleResult(
                "greeting",
                True,
                [Evidence("agent", 0.5, 4.25, "您好我姓许请问有什么可以帮助您")],
                "您好 and an offer of help",
                10.0,
            ),
            RuleResult(
                "closing",
                False,
                [Evidence("agent", 9.0, 10.0, "好的再见")],
                "no thanks for calling",
                10.0,
            ),
            RuleResult("hold_etiquette", None, [], "no hold", 5.0),
        ],
    )
    number = await store.save_analysis(
        CALL, segments=segments, ticket=ticket, qa=qa, qa_source="asr",
        legs_checked={"caller": LegCheck(0), "agent": LegCheck(0)},
    )
    assert number

    await store.open_call(OTHER, caller_number="", channel_id="2.1")

    outside.write_bytes(SECRET)
    await store.open_call(ESCAPING, caller_number="", channel_id="3.1")
    await store.add_leg(ESCAPING, "agent", channel_id=None, recording_name="../outside.wav")
    await store.open_call(ABSOLUTE, caller_number="", channel_id="4.1")
    await store.add_leg(ABSOLUTE, "agent", channel_id=None, recording_name=str(outside))
    await store.open_call(LINKED, caller_number="", channel_id="5.1")
    (rec_dir / LINKED).mkdir(parents=True)
    (rec_dir / LINKED / "agent.wav").symlink_to(outside)
    await store.add_leg(LINKED, "agent", channel_id=None, recording_name=f"{LINKED}/agent.wav")
    return number, agent_wav


@pytest.fixture
async def web(db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[Web]:
    rec_dir = tmp_path / "rec"
    rec_dir.mkdir()
    number, agent_wav = await _seed(PgStore(db_pool), rec_dir, tmp_path / "outside.wav")
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=rec_dir)
    app = create_app(settings, telephony=False, workers=0)
    await add_user(db_pool, "boss", "supervisor")
    async with running(app) as server, signed_in(server, "boss") as client:
        yield Web(client, rec_dir, number, agent_wav, server)


async def _json(resp: Any, status: int) -> Any:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    return json.loads(await resp.text())


async def _raw_get(client: Browser, path: str) -> tuple[int, bytes]:
    """One request with the path sent exactly as written (no client normalising),
    carrying the client's session cookie."""
    url = client.server.make_url("/")
    host, port = url.host, url.port
    cookie = "; ".join(f"{c.key}={c.value}" for c in client.session.cookie_jar)
    assert port is not None
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _assert_error(body: dict[str, Any], status: int, error: str) -> None:
    assert body["status"] == status
    assert body["error"] == error
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)


# ---- API ---------------------------------------------------------------------------------


async def test_healthz(web: Web) -> None:
    body = await _json(await web.client.get("/healthz"), 200)
    assert body == {"status": "ok", "database": "ok", "live": {}, "pending_writes": 0}


async def test_healthz_without_database_is_503(web: Web) -> None:
    await web.client.app[POOL].close()  # the database is gone
    body = await _json(await web.client.get("/healthz"), 503)
    _assert_error(body, 503, "unavailable")


async def test_calls_list(web: Web) -> None:
    calls = await _json(await web.client.get("/api/calls"), 200)
    by_id = {c["id"]: c for c in calls}
    assert set(by_id) == {CALL, OTHER, ESCAPING, ABSOLUTE, LINKED}
    call = by_id[CALL]
    assert call["ticket_number"] == web.ticket_number
    assert (call["category"], call["urgency"], call["qa_score"]) == ("engineering", "P2", 82.5)
    assert (call["stage"], call["status"], call["hangup_by"]) == (
        "conversation",
        "processed",
        "caller",
    )
    datetime.fromisoformat(call["started_at"])  # ISO timestamps
    assert by_id[OTHER]["ticket_number"] is None and by_id[OTHER]["qa_score"] is None
    started = [c["started_at"] for c in calls]
    assert started == sorted(started, reverse=True)  # newest first

    assert len(await _json(await web.client.get("/api/calls", params={"limit": "2"}), 200)) == 2


@pytest.mark.parametrize("limit", ["abc", "0", "1001", "-5", "1.5", ""])
async def test_calls_bad_limit_is_400_with_error_id(web: Web, limit: str) -> None:
    body = await _json(await web.client.get("/api/calls", params={"limit": limit}), 400)
    _assert_error(body, 400, "bad_request")
    assert "limit" in body["message"]
    assert "limit" in body["details"]


async def test_call_document(web: Web) -> None:
    doc = await _json(await web.client.get(f"/api/calls/{CALL}"), 200)
    assert doc["call"]["id"] == CALL
    assert doc["call"]["caller_number"] == "18761450923"

    transcript = doc["transcript"]
    assert [(s["leg"], s["start"]) for s in transcript] == [
        ("agent", 0.5),
        ("caller", 6.6),
        ("agent", 9.0),
    ]
    first = transcript[0]
    assert first["text"] == "您好我姓许请问有什么可以帮助您"
    assert first["words"][0] == {"w": "您", "start": 0.5, "end": 0.75, "conf": 0.9}

    ticket = doc["ticket"]
    assert ticket["number"] == web.ticket_number
    assert (ticket["category"], ticket["urgency"]) == ("engineering", "P2")
    assert (ticket["building"], ticket["unit"], ticket["room"]) == ("15", "2", "604")
    assert ticket["status"] == "new"  # opened by the analysis, nobody handled it yet
    datetime.fromisoformat(ticket["deadline"])

    qa = doc["qa"]
    assert qa["score"] == 82.5
    rules = {r["id"]: r for r in qa["rules"]}
    assert set(rules) == {"greeting", "closing", "hold_etiquette"}
    assert rules["closing"]["passed"] is False
    assert rules["closing"]["evidence"] == [
        {"leg": "agent", "start": 9.0, "end": 10.0, "text": "好的再见"}
    ]
    assert rules["hold_etiquette"]["passed"] is None
    assert rules["hold_etiquette"]["evidence"] == []

    assert {r["leg"]: r["path"] for r in doc["recordings"]} == {
        "caller": f"{CALL}/caller.wav",
        "agent": f"{CALL}/agent.wav",
    }
    kinds = [e["kind"] for e in doc["events"]]
    assert kinds[0] == "opened" and "finished" in kinds and kinds[-1] == "processed"


async def test_call_without_results(web: Web) -> None:
    doc = await _json(await web.client.get(f"/api/calls/{OTHER}"), 200)
    assert doc["transcript"] == [] and doc["ticket"] is None and doc["qa"] is None


async def test_unknown_call_is_404_json(web: Web) -> None:
    body = await _json(await web.client.get("/api/calls/no-such-call"), 404)
    _assert_error(body, 404, "not_found")
    assert body["details"] == {"call_id": "no-such-call"}
    # The page of an unknown call, and an unknown route, answer the same way.
    _assert_error(await _json(await web.client.get("/calls/no-such-call"), 404), 404, "not_found")
    _assert_error(await _json(await web.client.get("/api/nothing-here"), 404), 404, "not_found")


async def test_wrong_method_is_405_json(web: Web) -> None:
    body = await _json(await web.client.post("/api/calls"), 405)
    _assert_error(body, 405, "method_not_allowed")


async def test_tickets_agents_and_queues(web: Web) -> None:
    tickets = await _json(await web.client.get("/api/tickets"), 200)
    assert [t["number"] for t in tickets["items"]] == [web.ticket_number]
    assert await _json(await web.client.get("/api/agents"), 200) == []
    # No telephony: no routing app, but still a JSON answer.
    assert await _json(await web.client.get("/api/queues"), 200) == {"queues": {}}


# ---- recordings --------------------------------------------------------------------------


async def test_recording_whole_file(web: Web) -> None:
    resp = await web.client.get(f"/recordings/{CALL}/agent.wav")
    assert resp.status == 200
    assert await resp.read() == web.agent_wav
    assert resp.headers.get("Accept-Ranges") == "bytes"


async def test_recording_range_request_is_206(web: Web) -> None:
    size = len(web.agent_wav)
    resp = await web.client.get(
        f"/recordings/{CALL}/agent.wav", headers={"Range": "bytes=100-1099"}
    )
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 100-1099/{size}"
    assert await resp.read() == web.agent_wav[100:1100]
    # Seeking to the end (an open range) works too.
    resp = await web.client.get(
        f"/recordings/{CALL}/agent.wav", headers={"Range": f"bytes={size - 10}-"}
    )
    assert resp.status == 206
    assert await resp.read() == web.agent_wav[-10:]


async def test_unknown_leg_or_recording_is_404(web: Web) -> None:
    for path in (
        f"/recordings/{CALL}/bystander.wav",
        f"/recordings/{OTHER}/agent.wav",
        "/recordings/no-such-call/caller.wav",
        f"/recordings/{ESCAPING}/caller.wav",
    ):
        body = await _json(await web.client.get(path), 404)
        _assert_error(body, 404, "not_found")
    (web.rec_dir / CALL / "caller.wav").unlink()  # the row is there, the file is gone
    _assert_error(
        await _json(await web.client.get(f"/recordings/{CALL}/caller.wav"), 404), 404, "not_found"
    )


async def test_personal_numbers_are_masked_and_muted_unless_a_manager_asks(
    web: Web, db_pool: asyncpg.Pool
) -> None:
    """Masked and muted for everyone by default; as said (the original) only for
    supervisors and admins who ask, and each such look is audited. A leg not yet
    checked has no copy to hear: only the original, for them."""
    store, call = PgStore(db_pool), "c0ffee00000000aa"
    await store.open_call(call, caller_number="13900000009", channel_id="9.1")
    for leg in ("caller", "agent"):
        await store.add_leg(call, leg, channel_id=None, recording_name=f"{call}/{leg}.wav")
    _wav_bytes(web.rec_dir / call / "caller.wav", seconds=4.0)
    _wav_bytes(web.rec_dir / call / "agent.wav")
    assert await store.finish_call(call, stage="conversation", hangup_by="caller")
    said = "我的手机是13800138000"
    found = [Finding("mobile", "caller", 1.25, 4.0)]
    muted = write_muted_copy(web.rec_dir, f"{call}/caller.wav", found)
    await store.save_analysis(call, segments=[_segment("caller", 0.0, said)], ticket=None,
                              qa=None, qa_source="asr", legs_checked={"caller": LegCheck(1, muted)})
    masked = "我的手机是" + "*" * 11
    await add_user(db_pool, "qa9", "qa")
    async with signed_in(web.server, "qa9") as qa:
        doc = await _json(await qa.get(f"/api/calls/{call}"), 200)
        assert [s["text"] for s in doc["transcript"]] == [masked] and doc["transcript_masked"]
        heard = await qa.get(f"/recordings/{call}/caller.wav")
        assert heard.status == 200
        assert await heard.read() == (web.rec_dir / muted).read_bytes()
        for path in (f"/api/calls/{call}?original=true",
                     f"/recordings/{call}/caller.wav?original=1"):
            _assert_error(await _json(await qa.get(path), 403), 403, "forbidden")
        _assert_error(await _json(await qa.get(f"/recordings/{call}/agent.wav"), 409), 409,
                      "conflict")  # not checked yet
        _assert_error(await _json(await qa.get(f"/api/calls/{call}?original=maybe"), 400),
                      400, "invalid_input")
        page = await qa.get(f"/calls/{call}")
        assert page.status == 200
        html = await page.text()
        assert masked in html and said not in html and "?original=true" not in html
        assert (await qa.get(f"/calls/{call}?original=true")).status == 403
    page = await (await web.client.get(f"/calls/{call}")).text()
    assert masked in page and said not in page and 'href="?original=true"' in page
    page = await (await web.client.get(f"/calls/{call}?original=true")).text()
    assert said in page and f"/recordings/{call}/caller.wav?original=true" in page
    doc = await _json(await web.client.get(f"/api/calls/{call}"), 200)
    assert [s["text"] for s in doc["transcript"]] == [masked]
    doc = await _json(await web.client.get(f"/api/calls/{call}?original=true"), 200)
    assert [s["text"] for s in doc["transcript"]] == [said] and not doc["transcript_masked"]
    original = await web.client.get(f"/recordings/{call}/agent.wav?original=true")
    assert original.status == 200
    assert await original.read() == (web.rec_dir / call / "agent.wav").read_bytes()
    audited = await db_pool.fetch(
        "SELECT action, details FROM audit_log WHERE target_id = $1 ORDER BY id", call)
    assert [a["action"] for a in audited] == [
        "recording_downloaded", "transcript_originals_viewed", "transcript_originals_viewed",
        "recording_downloaded"]
    assert [(a["details"] or {}).get("original") for a in audited] == [False, None, None, True]


@pytest.mark.parametrize(
    "path",
    [
        "/recordings/..%2F..%2Fetc/passwd.wav",
        "/recordings/..%2F..%2F..%2F..%2Fetc%2Fpasswd/agent.wav",
        "/recordings/%2e%2e/agent.wav",
        "/recordings/../../etc/passwd.wav",
        f"/recordings/{CALL}/..%2F..%2Foutside.wav",
        "/recordings/%2Fetc%2Fpasswd/agent.wav",
    ],
)
async def test_path_traversal_in_url_is_404(web: Web, path: str) -> None:
    status, body = await _raw_get(web.client, path)
    assert status == 404
    assert b"root:" not in body and SECRET not in body


@pytest.mark.parametrize("call_id", [ESCAPING, ABSOLUTE, LINKED])
async def test_recording_row_outside_the_folder_is_404(web: Web, call_id: str) -> None:
    resp = await web.client.get(f"/recordings/{call_id}/agent.wav?original=true")
    body = await _json(resp, 404)
    _assert_error(body, 404, "not_found")
    assert SECRET.decode() not in json.dumps(body)


# ---- pages -------------------------------------------------------------------------------


async def test_index_page(web: Web) -> None:
    resp = await web.client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    assert f'<a href="/tickets/{web.ticket_number}">{web.ticket_number}</a>' in html
    assert f'href="/calls/{CALL}"' in html
    assert ('<td>工程维修</td><td><span class="urgency urgency-P2">P2 影响基本生活</span></td>\n'
            '<td>82</td>') in html  # QA 82.5, rounded
    assert "<td>报修</td>" in html  # the queue by its name, not its id
    assert f"<td>{await _started_here(web, CALL)}</td>" in html
    assert "通话记录" in html  # zh-CN by default


async def _started_here(web: Web, call_id: str) -> str:
    """When the call started, as the hotline's clock on the wall shows it."""
    started = await web.server.app[POOL].fetchval(
        "SELECT started_at FROM calls WHERE id = $1", call_id)
    zone = web.server.app[TICKETS].policy.zone
    return str(started.astimezone(zone).strftime("%Y-%m-%d %H:%M"))


async def test_call_page_plays_evidence(web: Web) -> None:
    resp = await web.client.get(f"/calls/{CALL}")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    assert f'<a href="/tickets/{web.ticket_number}">{web.ticket_number}</a>' in html
    assert '<script type="module" src="/static/call.js"></script>' in html
    # Ids by their names, times on the hotline's clock, the QA review a click away.
    assert '<span class="urgency urgency-P2">P2 影响基本生活</span>' in html
    assert "<dd>报修</dd>" in html and "通话 · 来电方挂机" in html
    assert f"<dd>{await _started_here(web, CALL)}</dd>" in html
    assert "开头语<br><span class=\"muted\">greeting</span>" in html
    assert f'href="/qa/calls/{CALL}"' in html
    assert "onclick" not in html and "<script>" not in html  # the CSP allows no inline code
    # A QA evidence item and a transcript line, each playing its leg at its time.
    assert 'data-leg="agent" data-start="9.0" data-end="10.0"' in html
    assert 'data-leg="caller" data-start="6.6"' in html
    assert (f'<audio id="audio-agent" controls preload="none" '
            f'src="/recordings/{CALL}/agent.wav"></audio>') in html
    assert 'id="audio-caller"' in html
    # Stored text is escaped, never markup.
    assert "<b>urgent</b>" not in html and "&lt;b&gt;urgent&lt;/b&gt;" in html
    script = await web.client.get("/static/call.js")
    assert script.status == 200 and 'import {play} from "./common.js"' in await script.text()
    common = await web.client.get("/static/common.js")
    assert "export function play(leg, start, end)" in await common.text()


async def test_pages_bad_limit_is_400(web: Web) -> None:
    body = await _json(await web.client.get("/", params={"limit": "abc"}), 400)
    _assert_error(body, 400, "bad_request")


async def test_metrics_count_calls_by_stage_and_status(web: Web) -> None:
    resp = await web.client.get("/metrics")  # a supervisor (loopback is open too)
    assert resp.status == 200
    text = await resp.text()
    assert "# TYPE callcenter_calls gauge" in text
    assert 'callcenter_calls{stage="' in text
    assert "callcenter_database_up 1.0" in text and "callcenter_pending_writes 0.0" in text


async def test_metrics_still_answer_while_the_database_is_away(web: Web) -> None:
    await web.client.app[POOL].close()  # the database is gone
    async with browser(web.server) as prometheus:  # on this machine: no sign-in
        resp = await prometheus.get("/metrics")
        assert resp.status == 200
        assert "callcenter_database_up 0.0" in await resp.text()


async def test_stats_use_the_spec_metric_names(web: Web) -> None:
    data = await _json(await web.client.get("/api/stats?hours=1"), 200)
    for name in ("answer_rate", "service_level", "service_level_threshold_s", "abandon_rate",
                 "asa", "aht", "calls_for_agent"):
        assert name in data
    error = await _json(await web.client.get("/api/stats?hours=abc"), 400)
    assert error["error"] == "bad_request"
    assert {"sl2", "short_abandon_s", "queues", "intervals", "agents"} <= set(data)


async def test_ivr_figures_per_node(web: Web, db_pool: asyncpg.Pool) -> None:
    store = PgStore(db_pool)
    await store.open_call("ivr-1", caller_number="1", channel_id="9.1")
    await store.record_ivr_events("ivr-1", [
        {"node": "main", "kind": "entry"}, {"node": "main", "kind": "invalid", "via": "key"},
        {"node": "main", "kind": "choice", "via": "speech", "choice": "repair"},
        {"node": "repair", "kind": "entry"}, {"node": "repair", "kind": "hangup"}])
    data = await _json(await web.client.get("/api/ivr/stats?hours=1"), 200)
    main, repair = data["nodes"]["main"], data["nodes"]["repair"]
    assert (main["entries"], main["invalid"], main["choices"], main["by_choice"]) == (
        1, 1, {"key": 0, "speech": 1}, {"repair": 1})
    assert (main["speech_share"], repair["hangups"], repair["hangup_rate"]) == (100.0, 1, 100.0)
    error = await _json(await web.client.get("/api/ivr/stats?hours=-1"), 400)
    assert error["error"] == "bad_request"
    web.client.app[LIVE]["ivr"] = NodeCounts()
    web.client.app[LIVE]["ivr"].add([NodeEvent("main", "choice", "key", "agent")])
    text = await (await web.client.get("/metrics")).text()
    assert ('callcenter_ivr_node_events_total{kind="choice",node="main",via="key"} 1.0'
            in text)


async def test_transcription_figures_in_the_api_and_metrics(
    web: Web, db_pool: asyncpg.Pool
) -> None:
    store = PgStore(db_pool)
    for call_id, audio_s in (("t-1", 120.0), ("t-2", 60.0)):
        await store.open_call(call_id, caller_number="1", channel_id=call_id)
        await store.update_call(call_id, stage="conversation", queue="repair")
        assert await store.finish_call(call_id, stage="conversation", hangup_by="caller")
        await store.save_analysis(call_id, segments=[], ticket=None, qa=None, qa_source="asr",
                                  figures={"audio_s": audio_s, "decode_s": audio_s / 20,
                                           "cpu_s": audio_s / 25})
    # No worker runs here: the jobs of every finished call stay queued.
    before = await _json(await web.client.get("/api/transcription/stats"), 200)
    await store.open_call("t-3", caller_number="1", channel_id="t-3")
    await store.update_call("t-3", stage="queue", queue="repair")
    assert await store.finish_call("t-3", stage="queue", hangup_by="caller")
    data = await _json(await web.client.get("/api/transcription/stats?hours=1"), 200)
    assert data["jobs"]["queued"] == before["jobs"]["queued"] + 1
    assert data["calls"] == before["calls"] >= 2  # the fixture's calls have no figures
    assert (data["audio_s"], data["decode_s"], data["real_time_factor"],
            data["audio_s_per_decode_s"]) == (180.0, 9.0, 0.04, 20.0)
    assert data["lag_s"]["p50"] is not None and data["lag_s"]["p50"] >= 0
    error = await _json(await web.client.get("/api/transcription/stats?hours=x"), 400)
    assert error["error"] == "bad_request"
    text = await (await web.client.get("/metrics")).text()
    assert f'callcenter_transcription_jobs{{state="queued"}} {data["jobs"]["queued"]}.0' in text
    assert "callcenter_transcription_audio_seconds_last_hour 180.0" in text
    assert "callcenter_transcription_real_time_factor_last_hour 0.04" in text
    assert 'callcenter_transcription_lag_seconds_last_hour{quantile="0.95"}' in text


async def test_stats_per_queue_interval_and_agent(web: Web, db_pool: asyncpg.Pool) -> None:
    store = PgStore(db_pool)
    await store.upsert_agent("a1", name="周", endpoint="Local/1@sim-agents/n", skills=["repair"])
    start = datetime.now(UTC) - timedelta(minutes=20)
    await store.record_agent_state("a1", from_state="logged_out", to_state="available",
                                   reason=None, at=start)
    await store.record_agent_state("a1", from_state="available", to_state="on_call",
                                   reason=None, at=start + timedelta(minutes=5))
    await store.record_agent_state("a1", from_state="on_call", to_state="wrap_up",
                                   reason=None, at=start + timedelta(minutes=10))
    await store.record_agent_state("a1", from_state="wrap_up", to_state="paused",
                                   reason="lunch", at=start + timedelta(minutes=11))
    data = await _json(await web.client.get("/api/stats?hours=1&interval_min=15"), 200)
    agent = data["agents"]["a1"]
    assert agent["time_in_state_s"]["on_call"] == pytest.approx(300, abs=1)
    # busy 6 of the 11 staffed minutes (paused time does not count)
    assert agent["occupancy"] == pytest.approx(100 * 6 / 11, abs=0.2)
    assert data["queues"]["repair"]["calls_for_agent"] == 0  # CALL never queued (no queued_at)
    assert data["intervals"] and all("occupancy" in row for row in data["intervals"])
    error = await _json(await web.client.get("/api/stats?hours=8000&interval_min=1"), 400)
    assert error["error"] == "bad_request"


async def test_agent_state_requests_go_to_the_acd(web: Web, db_pool: asyncpg.Pool) -> None:
    store = PgStore(db_pool)
    await store.upsert_agent("a1", name="周", endpoint="Local/1@sim-agents/n", skills=["repair"])
    resp = await web.client.post("/api/agents/a1/state", json={"action": "pause",
                                                                "reason": "training"})
    body = await _json(resp, 202)
    assert body["action"] == "pause"
    pending = await store.pending_agent_requests()
    assert [(r["action"], r["reason"], r["requested_by"]) for r in pending] == [
        ("login", None, "upsert"), ("pause", "training", "web:boss")]
    bad = await _json(await web.client.post("/api/agents/a1/state", json={"action": "dance"}),
                      400)
    _assert_error(bad, 400, "bad_request")
    missing = await _json(await web.client.post("/api/agents/nobody/state",
                                                json={"action": "login"}), 404)
    _assert_error(missing, 404, "not_found")
    left = await web.client.post("/api/agents/a1/state", json={"action": "leave",
                                                                "queue": "complaint"})
    assert (await _json(left, 202))["action"] == "leave"
    pending = await store.pending_agent_requests()
    assert (pending[-1]["action"], pending[-1]["reason"]) == ("leave", "complaint")
    nowhere = await web.client.post("/api/agents/a1/state", json={"action": "join",
                                                                   "queue": "nowhere"})
    assert "repair" in (await _json(nowhere, 400))["details"]["queues"]
    garbage = await web.client.post("/api/agents/a1/state", data=b"{not json")
    _assert_error(await _json(garbage, 400), 400, "bad_request")
    # /api/live needs the distributor, which this process (no telephony) does not run.
    _assert_error(await _json(await web.client.get("/api/live"), 503), 503, "unavailable")


async def test_each_queue_is_measured_against_its_own_service_level(
    db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    (tmp_path / "queues.yaml").write_text(
        "queues:\n  repair: {skills: {repair: 1}, service_level_s: 30, short_abandon_s: 2}\n"
        "  general: {}\n", encoding="utf-8")
    store = PgStore(db_pool)
    now = datetime.now(UTC)
    await store.open_call("sl", caller_number="1", channel_id="x")
    await store.update_call("sl", stage="queue", queue="repair", queued_at=now - timedelta(
        seconds=60), answered_at=now - timedelta(seconds=35))  # answered after 25 s
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=tmp_path,
                        queues_file=tmp_path / "queues.yaml")
    await add_user(db_pool, "qa1", "qa")
    app = create_app(settings, telephony=False, workers=0)
    async with running(app) as server, signed_in(server, "qa1") as client:
        own = (await _json(await client.get("/api/stats?hours=1"), 200))["queues"]["repair"]
        assert (own["service_level_threshold_s"], own["short_abandon_s"]) == (30, 2)
        assert own["service_level"] == 100.0  # 25 s <= the queue's own 30 s
        asked = (await _json(await client.get("/api/stats?hours=1&threshold_s=20"), 200))
        assert asked["queues"]["repair"]["service_level"] == 0.0  # 25 s > the asked 20 s
