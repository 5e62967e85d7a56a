"""``callcenter analyze`` as a user runs it: the real CLI in a subprocess.

Timeline mode (no ASR) checks the whole JSON document against the spec's ids;
the ASR modes (two mono legs, one stereo file) run on a 20 s excerpt of the
shortest scenario to stay fast; storing is checked row by row in a fresh
PostgreSQL database; bad input must give exit status 2 and one line on stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from callcenter import cli
from callcenter.db.connect import connect
from callcenter.qa.engine import RULE_IDS as ENGINE_RULE_IDS

SCENARIO = "d007"  # the shortest dev call (78 s)
CLOSED_DSN = "postgresql://x@127.0.0.1:1/x"  # nothing listens on port 1
EXCERPT_S = 20.0

CATEGORIES = {"engineering", "cleaning", "security", "landscaping", "complaint", "consultation"}
URGENCIES = {"P1", "P2", "P3", "P4"}
RULE_IDS = set(ENGINE_RULE_IDS)
TICKET_KEYS = {
    "category",
    "urgency",
    "complaint_severity",
    "repeat_complaint",
    "vip",
    "caller_name",
    "phone",
    "building",
    "unit",
    "room",
    "description",
    "deadline",
    "escalate_to",
    "incomplete",
    "callback_required",
    "channel",
}


# ---- helpers --------------------------------------------------------------------------


def _env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CALLCENTER_DATABASE_URL", "CALLCENTER_CONFIG_FILE")
    }
    env["CALLCENTER_DATA_DIR"] = str(data_dir)
    env["CALLCENTER_LOG_LEVEL"] = "WARNING"
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return env


def run_cli(
    *args: str | Path, data_dir: Path, database_url: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callcenter", "analyze", *map(str, args)],
        env=_env(data_dir, database_url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok_document(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)  # exactly one JSON document, nothing else on stdout
    assert isinstance(doc, dict)
    return doc


def read_pcm(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wf:
        assert wf.getnchannels() == 1 and wf.getsampwidth() == 2
        rate = wf.getframerate()
        return np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2"), rate


def write_pcm(path: Path, samples: np.ndarray, rate: int) -> Path:
    arr = np.asarray(samples, dtype="<i2")
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1 if arr.ndim == 1 else arr.shape[1])
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(arr.tobytes())
    return path


def check_document(doc: dict[str, Any], *, duration: float, legs: set[str]) -> None:
    """The shape and spec values every analyze document must have."""
    assert set(doc) >= {"call", "transcript", "ticket", "qa"}
    call = doc["call"]
    assert call["id"] and call["source"] == "analyze"
    assert 0 < call["duration_s"] <= duration + 0.01

    transcript = doc["transcript"]
    assert {s["leg"] for s in transcript} == legs
    starts = [s["start"] for s in transcript]
    assert starts == sorted(starts)
    for seg in transcript:
        assert set(seg) >= {"leg", "start", "end", "text", "words"}
        assert 0 <= seg["start"] <= seg["end"] <= duration + 0.01
        assert seg["text"]
        assert seg["words"], seg
        for w in seg["words"]:
            assert set(w) >= {"w", "start", "end", "conf"}
            assert w["w"]
            assert seg["start"] - 0.01 <= w["start"] <= w["end"] <= seg["end"] + 0.01
            assert 0 <= w["conf"] <= 1

    ticket = doc["ticket"]
    assert set(ticket) >= TICKET_KEYS
    assert ticket["category"] in CATEGORIES
    assert ticket["urgency"] in URGENCIES
    assert ticket["complaint_severity"] in (None, "minor", "important", "major")
    assert ticket["vip"] in ("none", "elderly", "disabled")
    assert isinstance(ticket["repeat_complaint"], bool)
    assert ticket["deadline"]  # ISO time, the SLA deadline

    qa = doc["qa"]
    assert isinstance(qa["score"], int | float) and 0 <= qa["score"] <= 100
    assert {r["id"] for r in qa["rules"]} == RULE_IDS
    assert len(qa["rules"]) == len(RULE_IDS)
    for rule in qa["rules"]:
        assert rule["passed"] in (True, False, None)
        for ev in rule["evidence"]:
            assert set(ev) >= {"leg", "start", "end", "text"}
            assert ev["leg"] in ("caller", "agent")
            assert 0 <= ev["start"] <= ev["end"] <= duration + 0.01


@pytest.fixture(scope="module")
def scenario(shared_dir: Path) -> Path:
    folder = shared_dir / "scenarios" / "dev" / SCENARIO
    if not (folder / "meta.json").is_file():
        pytest.skip(f"scenario {SCENARIO} not found")
    return folder


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """main() in-process reconfigures the root logger; give pytest's back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# ---- timeline mode (no ASR) -------------------------------------------------------------


def test_timeline_prints_one_document_with_spec_values(scenario: Path, tmp_path: Path) -> None:
    meta = json.loads((scenario / "meta.json").read_text(encoding="utf-8"))
    proc = run_cli("--timeline", scenario / "meta.json", "--no-store", data_dir=tmp_path)
    doc = ok_document(proc)
    check_document(doc, duration=meta["duration_s"], legs={"caller", "agent"})

    call = doc["call"]
    assert call["input"] == "text"
    assert call["caller_number"] == meta["caller"]["phone"]
    assert call["ivr_digits"] == meta["ivr_digits"]
    assert call["ticket_number"] is None  # not stored
    assert call["legs"] == {}
    # The ground-truth turns, in order, word times spread over each turn.
    assert [(s["leg"], s["start"], s["text"]) for s in doc["transcript"]] == [
        (t["who"], round(t["start"], 3), t["text"]) for t in meta["timeline"]
    ]
    # The labels of this scenario (text mode has no recognition errors).
    labels = meta["labels"]
    ticket = doc["ticket"]
    assert ticket["category"] == labels["category"]
    assert ticket["urgency"] == labels["urgency"]
    assert ticket["phone"] == meta["caller"]["phone"]
    assert (ticket["building"], ticket["unit"], ticket["room"]) == (
        meta["caller"]["building"],
        meta["caller"]["unit"],
        meta["caller"]["room"],
    )
    rules = {r["id"]: r for r in doc["qa"]["rules"]}
    for rule_id in labels["qa_pass"]:
        assert rules[rule_id]["passed"] is True, rule_id
    for rule_id in labels["qa_fail"]:
        assert rules[rule_id]["passed"] is False, rule_id
        assert rules[rule_id]["evidence"], f"{rule_id} failed without evidence"
    assert doc["qa"]["score"] < 100


def test_timeline_phone_and_ivr_options_override_meta(scenario: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "--timeline",
        scenario / "meta.json",
        "--phone",
        "13800000000",
        "--ivr-digits",
        "3",
        "--no-store",
        data_dir=tmp_path,
    )
    doc = ok_document(proc)
    assert doc["call"]["caller_number"] == "13800000000"
    assert doc["call"]["ivr_digits"] == "3"
    assert doc["ticket"]["phone"] == "13800000000"


def test_caller_only_timeline_gets_callback_ticket_and_no_qa(tmp_path: Path) -> None:
    meta = tmp_path / "meta.json"
    meta.write_text(
        json.dumps(
            {
                "timeline": [
                    {"who": "caller", "start": 0.0, "end": 3.0, "text": "我家厨房水管漏水了"}
                ]
            }
        )
    )
    doc = ok_document(run_cli("--timeline", meta, "--no-store", data_dir=tmp_path))
    assert doc["qa"] is None  # no agent speech, nothing to score
    assert doc["ticket"]["callback_required"] is True
    assert doc["ticket"]["category"] in CATEGORIES


def test_no_store_never_touches_the_database(scenario: Path, tmp_path: Path) -> None:
    # A DATABASE_URL nobody listens on: storing would fail, --no-store must not try.
    proc = run_cli(
        "--timeline",
        scenario / "meta.json",
        "--no-store",
        data_dir=tmp_path,
        database_url=CLOSED_DSN,
        timeout=60,
    )
    ok_document(proc)
    assert "database" not in proc.stderr.lower()
    # No DATABASE_URL: the embedded server would live in data_dir/pg; not started.
    proc = run_cli("--timeline", scenario / "meta.json", "--no-store", data_dir=tmp_path)
    ok_document(proc)
    assert not (tmp_path / "pg").exists()
    assert not (tmp_path / "recordings").exists()


async def test_timeline_is_stored_with_transcript_ticket_and_qa(
    scenario: Path, tmp_path: Path, db_dsn: str
) -> None:
    proc = await asyncio.to_thread(
        run_cli, "--timeline", scenario / "meta.json", data_dir=tmp_path, database_url=db_dsn
    )
    doc = ok_document(proc)
    call_id, number = doc["call"]["id"], doc["call"]["ticket_number"]
    assert number and number.startswith("T")

    conn = await connect(db_dsn)
    try:
        call = await conn.fetchrow("SELECT * FROM calls WHERE id = $1", call_id)
        assert call is not None
        assert call["source"] == "analyze"
        assert call["status"] == "processed"
        assert call["caller_number"] == doc["call"]["caller_number"]
        assert call["ivr_digits"] == doc["call"]["ivr_digits"]
        assert math.isclose(call["duration_s"], doc["call"]["duration_s"], abs_tol=0.01)

        segments = await conn.fetch(
            "SELECT leg, start_s, end_s, text, words FROM transcript_segments"
            " WHERE call_id = $1 ORDER BY start_s, id",
            call_id,
        )
        assert [(s["leg"], s["text"]) for s in segments] == [
            (s["leg"], s["text"]) for s in doc["transcript"]
        ]
        assert segments[0]["words"][0]["w"] == doc["transcript"][0]["words"][0]["w"]

        ticket = await conn.fetchrow("SELECT * FROM tickets WHERE call_id = $1", call_id)
        assert ticket is not None
        assert ticket["number"] == number
        for key in ("category", "urgency", "building", "unit", "room", "phone"):
            assert ticket[key] == doc["ticket"][key], key

        qa = await conn.fetchrow("SELECT * FROM qa_results WHERE call_id = $1", call_id)
        assert qa is not None
        assert math.isclose(qa["score"], doc["qa"]["score"])
        assert qa["source"] == "text"
        rules = await conn.fetch(
            "SELECT rule_id, passed, evidence FROM qa_rule_results WHERE call_id = $1", call_id
        )
        assert {r["rule_id"]: r["passed"] for r in rules} == {
            r["id"]: r["passed"] for r in doc["qa"]["rules"]
        }
        assert (
            await conn.fetchval("SELECT count(*) FROM recordings WHERE call_id = $1", call_id) == 0
        )
    finally:
        await conn.close()


async def test_a_second_call_of_the_same_caller_links_the_earlier_ticket(
    scenario: Path, tmp_path: Path, db_dsn: str
) -> None:
    first = ok_document(
        await asyncio.to_thread(
            run_cli, "--timeline", scenario / "meta.json", data_dir=tmp_path, database_url=db_dsn
        )
    )
    second = ok_document(
        await asyncio.to_thread(
            run_cli, "--timeline", scenario / "meta.json", data_dir=tmp_path, database_url=db_dsn
        )
    )
    conn = await connect(db_dsn)
    try:
        earlier = await conn.fetchval(
            "SELECT id FROM tickets WHERE number = $1", first["call"]["ticket_number"]
        )
        history = await conn.fetchval(
            "SELECT history FROM tickets WHERE number = $1", second["call"]["ticket_number"]
        )
    finally:
        await conn.close()
    assert history == [earlier]


def test_unreachable_database_is_one_line_not_a_traceback(
    scenario: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    import callcenter.db.connect as db_connect

    real_connect = db_connect.connect

    async def connect_once(dsn: str, **_: Any) -> asyncpg.Connection:
        return await real_connect(dsn, attempts=1, delay_s=0)

    monkeypatch.setattr(db_connect, "connect", connect_once)
    monkeypatch.setenv("DATABASE_URL", CLOSED_DSN)
    monkeypatch.setenv("CALLCENTER_DATABASE_CONNECT_ATTEMPTS", "1")
    monkeypatch.setenv("CALLCENTER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CALLCENTER_LOG_LEVEL", "ERROR")
    rc = cli.main(["analyze", "--timeline", str(scenario / "meta.json")])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("callcenter: ") and "--no-store" in lines[0]


# ---- ASR modes: two mono legs and one stereo file -----------------------------------------


@pytest.mark.asr
async def test_two_legs_and_stereo_transcribe_and_store(
    scenario: Path, tmp_path: Path, db_dsn: str
) -> None:
    caller, rate = read_pcm(scenario / "caller.wav")
    agent, agent_rate = read_pcm(scenario / "agent.wav")
    assert rate == agent_rate
    n = int(EXCERPT_S * rate)
    caller_wav = write_pcm(tmp_path / "caller.wav", caller[:n], rate)
    agent_wav = write_pcm(tmp_path / "agent.wav", agent[:n], rate)
    stereo_wav = write_pcm(tmp_path / "call.wav", np.stack([caller[:n], agent[:n]], axis=1), rate)
    data_dir = tmp_path / "data"

    docs = {}
    for mode, args in (
        ("legs", ["--caller", caller_wav, "--agent", agent_wav]),
        ("stereo", ["--stereo", stereo_wav]),
    ):
        proc = await asyncio.to_thread(
            run_cli, *args, "--phone", "18761450923", data_dir=data_dir, database_url=db_dsn
        )
        doc = ok_document(proc)
        check_document(doc, duration=EXCERPT_S, legs={"caller", "agent"})
        assert doc["call"]["input"] == "asr"
        assert doc["call"]["ticket_number"]
        for leg in ("caller", "agent"):
            assert doc["call"]["legs"][leg]["sample_rate"] == rate
            assert math.isclose(doc["call"]["legs"][leg]["duration_s"], EXCERPT_S)
        # The agent greets first (0.5 s in the ground truth), the caller answers at 6.6 s.
        first = doc["transcript"][0]
        assert first["leg"] == "agent" and first["start"] < 2.0
        assert "您好" in first["text"]
        assert any(s["leg"] == "caller" and 5.0 < s["start"] < 8.0 for s in doc["transcript"])
        docs[mode] = doc

    # Same audio, same recognition: the stereo split gives the legs' transcript.
    assert [s["text"] for s in docs["stereo"]["transcript"]] == [
        s["text"] for s in docs["legs"]["transcript"]
    ]

    conn = await connect(db_dsn)
    try:
        for doc in docs.values():
            call_id = doc["call"]["id"]
            assert await conn.fetchval(
                "SELECT count(*) FROM transcript_segments WHERE call_id = $1", call_id
            ) == len(doc["transcript"])
            assert (
                await conn.fetchval("SELECT number FROM tickets WHERE call_id = $1", call_id)
                == doc["call"]["ticket_number"]
            )
            assert (
                await conn.fetchval("SELECT source FROM qa_results WHERE call_id = $1", call_id)
                == "asr"
            )
            # Recordings are kept in the recordings folder under the name Asterisk's
            # get (relative path), one mono file per leg, so the web UI can play them.
            rows = await conn.fetch(
                "SELECT leg, path, duration_s, sample_rate FROM recordings WHERE call_id = $1",
                call_id,
            )
            assert {r["leg"]: r["path"] for r in rows} == {
                "caller": f"{call_id}/caller.wav",
                "agent": f"{call_id}/agent.wav",
            }
            for r in rows:
                kept, kept_rate = read_pcm(data_dir / "recordings" / r["path"])
                assert kept_rate == r["sample_rate"] == rate
                original = caller[:n] if r["leg"] == "caller" else agent[:n]
                assert np.array_equal(kept, original)
    finally:
        await conn.close()


# ---- bad input ---------------------------------------------------------------------------


def _mono(path: Path, seconds: float = 1.0) -> Path:
    return write_pcm(path, np.zeros(int(8000 * seconds), dtype=np.int16), 8000)


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str | Path], str]]:
    good = _mono(tmp / "good.wav")
    (tmp / "random.wav").write_bytes(np.random.default_rng(7).bytes(2000))
    write_pcm(tmp / "empty.wav", np.zeros(0, dtype=np.int16), 8000)
    (tmp / "truncated.wav").write_bytes(good.read_bytes()[:30])
    stereo = write_pcm(tmp / "stereo.wav", np.zeros((8000, 2), dtype=np.int16), 8000)
    (tmp / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp / "no_timeline.json").write_text(json.dumps({"id": "x", "duration_s": 3}))
    (tmp / "empty_timeline.json").write_text(json.dumps({"timeline": []}))
    (tmp / "bad_turn.json").write_text(json.dumps({"timeline": [{"who": "robot", "start": 0}]}))
    (tmp / "backwards.json").write_text(
        json.dumps({"timeline": [{"who": "agent", "start": 5, "end": 1, "text": "您好"}]})
    )
    (tmp / "nan.json").write_text(
        '{"timeline": [{"who": "agent", "start": NaN, "end": 1, "text": "您好"}]}'
    )
    (tmp / "bad_duration.json").write_text(
        json.dumps(
            {
                "duration_s": "long",
                "timeline": [{"who": "agent", "start": 0, "end": 1, "text": "您好"}],
            }
        )
    )
    (tmp / "bad_caller.json").write_text(
        json.dumps(
            {"caller": "x", "timeline": [{"who": "agent", "start": 0, "end": 1, "text": "您好"}]}
        )
    )
    return {
        "missing wav": (["--caller", tmp / "nope.wav", "--agent", good], "no such file"),
        "random bytes": (["--caller", tmp / "random.wav", "--agent", good], "not a WAV"),
        "zero frames": (["--caller", good, "--agent", tmp / "empty.wav"], "empty audio"),
        "truncated header": (
            ["--caller", tmp / "truncated.wav", "--agent", good],
            "corrupt WAV header",
        ),
        "caller without agent": (["--caller", good], "--agent"),
        "stereo as a leg": (["--caller", stereo, "--agent", good], "mono"),
        "mono as stereo": (["--stereo", good], "stereo"),
        "directory as stereo": (["--stereo", tmp], "not a regular file"),
        "missing stereo": (["--stereo", tmp / "nope.wav"], "no such file"),
        "missing meta": (["--timeline", tmp / "nope.json"], "no such file"),
        "meta not json": (["--timeline", tmp / "bad.json"], "not valid JSON"),
        "meta is a directory": (["--timeline", tmp], "not a regular file"),
        "meta without timeline": (["--timeline", tmp / "no_timeline.json"], "timeline"),
        "empty timeline": (["--timeline", tmp / "empty_timeline.json"], "empty"),
        "bad turn": (["--timeline", tmp / "bad_turn.json"], "timeline[0]"),
        "turn ends before start": (["--timeline", tmp / "backwards.json"], "timeline[0]"),
        "NaN time": (["--timeline", tmp / "nan.json"], "timeline[0]"),
        "bad duration": (["--timeline", tmp / "bad_duration.json"], "duration_s"),
        "caller not an object": (["--timeline", tmp / "bad_caller.json"], "caller"),
    }


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[str | Path], str]]:
    cases = _bad_inputs(tmp_path_factory.mktemp("bad-input"))
    assert set(cases) == set(BAD_CASE_NAMES)
    return cases


BAD_CASE_NAMES = [
    "missing wav",
    "random bytes",
    "zero frames",
    "truncated header",
    "caller without agent",
    "stereo as a leg",
    "mono as stereo",
    "directory as stereo",
    "missing stereo",
    "missing meta",
    "meta not json",
    "meta is a directory",
    "meta without timeline",
    "empty timeline",
    "bad turn",
    "turn ends before start",
    "NaN time",
    "bad duration",
    "caller not an object",
]


@pytest.mark.parametrize("case", BAD_CASE_NAMES)
def test_bad_input_exits_2_with_one_line(
    case: str, bad_inputs: dict[str, tuple[list[str | Path], str]], tmp_path: Path
) -> None:
    args, reason = bad_inputs[case]
    # Storing is on: bad input must be refused before any database is needed.
    proc = run_cli(*args, data_dir=tmp_path, database_url=CLOSED_DSN, timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("callcenter: ")
    assert reason in lines[0]
